package policy

import (
	"context"
	"os"
	"time"
)

// DefaultWatchInterval is how often Run looks at the file when its caller gives no interval.
const DefaultWatchInterval = 2 * time.Second

// Watcher tells when the file at a path is another version: another file (inode and device:
// a Kubernetes ConfigMap update swaps the ..data symlink, a deploy renames a new file over
// the old one), another size or modification time, or it appeared or vanished. It stats the
// path, following symlinks, never an open file descriptor, so a swapped symlink is seen.
// Standard library only: no inotify, which misses a symlink swapped above the watched file.
type Watcher struct {
	path string
	last os.FileInfo // nil: no file
}

// NewWatcher starts from the file as it is now (the caller has just loaded it).
func NewWatcher(path string) *Watcher {
	w := &Watcher{path: path}
	w.last, _ = os.Stat(path)
	return w
}

// Changed stats the path and reports whether it is another version than last time.
func (w *Watcher) Changed() bool {
	fi, _ := os.Stat(w.path)
	if sameVersion(w.last, fi) {
		return false
	}
	w.last = fi
	return true
}

// Run calls Changed every interval (if zero or negative, DefaultWatchInterval) until ctx
// ends, and changed when it reports a change; changed runs on Run's goroutine, one call at a
// time.
func (w *Watcher) Run(ctx context.Context, interval time.Duration, changed func()) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if w.Changed() {
				changed()
			}
		}
	}
}

// sameVersion reports whether two stats (nil: no file) show the same version of a file.
func sameVersion(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
