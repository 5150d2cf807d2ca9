package resolver

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"sync"
	"time"
)

// settings is one consistent view of resolv.conf (with Config overrides) and the hosts file.
type settings struct {
	rc    *ResolvConf
	hosts Hosts
}

// stamp identifies a version of a file cheaply: absent, or its size and modification time.
type stamp struct {
	exists bool
	size   int64
	mtime  time.Time
}

func statStamp(path string) stamp {
	if path == "" {
		return stamp{}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{exists: true, size: fi.Size(), mtime: fi.ModTime()}
}

// files re-reads resolv.conf and the hosts file when their stamps change, checking at most
// once per statInterval of the Config clock, on the lookup path (no watcher goroutine).
type files struct {
	cfg *Config

	mu        sync.Mutex
	lastCheck time.Time
	rcStamp   stamp
	hStamp    stamp
	cur       *settings
}

func newFiles(cfg *Config) (*files, error) {
	f := &files{cfg: cfg}
	f.rcStamp = statStamp(cfg.resolvConfPath())
	f.hStamp = statStamp(cfg.hostsPath())
	rc, err := loadResolvConf(cfg.resolvConfPath())
	if err != nil {
		return nil, err
	}
	h, err := loadHosts(cfg.hostsPath(), cfg.HostsSkip)
	if err != nil {
		return nil, err
	}
	f.cur = &settings{rc: cfg.apply(rc), hosts: h}
	f.lastCheck = cfg.now()
	return f, nil
}

// get returns the current settings, re-reading a changed file first. A file that changed but
// cannot be read keeps its previous contents.
func (f *files) get() *settings {
	now := f.cfg.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := now.Sub(f.lastCheck); d < statInterval && d >= 0 {
		return f.cur
	}
	f.lastCheck = now
	next := *f.cur
	changed := false
	if st := statStamp(f.cfg.resolvConfPath()); st != f.rcStamp {
		if rc, err := loadResolvConf(f.cfg.resolvConfPath()); err == nil {
			f.rcStamp, next.rc, changed = st, f.cfg.apply(rc), true
		}
	}
	if st := statStamp(f.cfg.hostsPath()); st != f.hStamp {
		if h, err := loadHosts(f.cfg.hostsPath(), f.cfg.HostsSkip); err == nil {
			f.hStamp, next.hosts, changed = st, h, true
		}
	}
	if changed {
		f.cur = &next
	}
	return f.cur
}

// LoadResolvConf parses the resolv.conf at path; a missing file yields the glibc fallback
// with Missing set.
func LoadResolvConf(path string) (*ResolvConf, error) { return loadResolvConf(path) }

// loadResolvConf parses path; a missing file yields the glibc fallback with Missing set.
func loadResolvConf(path string) (*ResolvConf, error) {
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return defaultResolvConf(), nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return ParseResolvConf(fh)
}

// loadHosts parses path; no path or a missing file yields no entries.
func loadHosts(path string, skip []netip.Prefix) (Hosts, error) {
	if path == "" {
		return nil, nil
	}
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	h, err := ParseHosts(fh)
	if err != nil || len(skip) == 0 {
		return h, err
	}
	return h.without(skip), nil
}
