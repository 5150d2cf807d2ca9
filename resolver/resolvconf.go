package resolver

import (
	"bufio"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Limits and defaults applied to resolv.conf options, as glibc does (resolv.h: RES_TIMEOUT,
// RES_DFLRETRY, RES_MAXRETRANS, RES_MAXRETRY; ndots is capped at 15).
const (
	defaultTimeout  = 5 * time.Second
	defaultAttempts = 2
	defaultNdots    = 1
	maxTimeout      = 30 * time.Second
	maxAttempts     = 5
	maxNdots        = 15
)

// ResolvConf is the part of resolv.conf(5) the resolver uses.
type ResolvConf struct {
	// Servers are the nameserver lines in file order (port 53 unless the line gave one in
	// AddrPort syntax, an extension for tests). Not capped at glibc's three (RFC 8305 §3.1).
	Servers []netip.AddrPort
	// Search is the search list, each entry absolute (with a trailing dot). The last
	// "search" or "domain" line wins, as in glibc.
	Search []string
	// Ndots, Timeout and Attempts come from "options", clamped to 0..15, 1s..30s and 1..5.
	Ndots    int
	Timeout  time.Duration
	Attempts int
	// Rotate spreads queries over the servers round-robin ("options rotate").
	Rotate bool
	// UseTCP sends every query over TCP ("options use-vc").
	UseTCP bool
	// Missing reports that the file did not exist, so Servers are the glibc fallback
	// ([::1]:53 and 127.0.0.1:53). The caller may log it.
	Missing bool
}

// defaultResolvConf is what a missing or empty file means: localhost servers, glibc options.
func defaultResolvConf() *ResolvConf {
	return &ResolvConf{
		Servers:  localServers(),
		Ndots:    defaultNdots,
		Timeout:  defaultTimeout,
		Attempts: defaultAttempts,
		Missing:  true,
	}
}

func localServers() []netip.AddrPort {
	return []netip.AddrPort{
		netip.AddrPortFrom(netip.IPv6Loopback(), 53),
		netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 53),
	}
}

// ParseResolvConf reads resolv.conf(5) syntax. Unknown keywords and options are ignored and
// malformed values fall back to defaults, as glibc does, so only a read error fails. A file
// without nameserver lines gets the localhost servers (with Missing false).
func ParseResolvConf(rd io.Reader) (*ResolvConf, error) {
	rc := defaultResolvConf()
	rc.Servers, rc.Missing = nil, false
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		f := strings.Fields(stripComment(sc.Text()))
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) > 1 {
				if ap, ok := parseServer(f[1]); ok {
					rc.Servers = append(rc.Servers, ap)
				}
			}
		case "domain":
			if len(f) > 1 {
				rc.Search = absNames(f[1:2])
			}
		case "search":
			rc.Search = absNames(f[1:])
		case "options":
			for _, o := range f[1:] {
				rc.option(o)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(rc.Servers) == 0 {
		rc.Servers = localServers()
	}
	return rc, nil
}

// stripComment cuts a line at '#' or ';' (both start comments in resolv.conf).
func stripComment(s string) string {
	if i := strings.IndexAny(s, "#;"); i >= 0 {
		return s[:i]
	}
	return s
}

func parseServer(s string) (netip.AddrPort, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 53), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Port() != 0 {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	return netip.AddrPort{}, false
}

// absNames makes each search domain absolute and drops the root and over-long entries.
func absNames(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		s = strings.ToLower(strings.TrimSuffix(s, ".")) + "."
		if s == "." || len(s) > 254 {
			continue
		}
		out = append(out, s)
	}
	return out
}

func (rc *ResolvConf) option(o string) {
	key, val, _ := strings.Cut(o, ":")
	n, err := strconv.Atoi(val)
	switch key {
	case "rotate":
		rc.Rotate = true
	case "use-vc", "usevc", "tcp":
		rc.UseTCP = true
	case "ndots":
		if err == nil {
			rc.Ndots = min(max(n, 0), maxNdots)
		}
	case "timeout":
		if err == nil {
			rc.Timeout = min(time.Duration(max(n, 1))*time.Second, maxTimeout)
		}
	case "attempts":
		if err == nil {
			rc.Attempts = min(max(n, 1), maxAttempts)
		}
	}
}
