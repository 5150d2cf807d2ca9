package policy

import (
	"net/netip"
	"strings"
)

// MatchName returns the first name rule that matches host (case-insensitive, a trailing dot
// ignored) on port, or nil. `*.example.com` matches every name below example.com, at any depth
// (a.example.com, a.b.example.com), and not example.com itself: write both lines to cover both.
func (p *Policy) MatchName(host string, port uint16) *Rule {
	if i := p.matchName(host, port); i >= 0 {
		return &p.Names[i]
	}
	return nil
}

func (p *Policy) matchName(host string, port uint16) int {
	host = normName(host)
	for i := range p.Names {
		r := &p.Names[i]
		if nameMatches(r, host) && r.port(port) {
			return i
		}
	}
	return -1
}

// MatchAddr returns the first address rule whose prefix holds a (IPv4-mapped IPv6 is taken as
// IPv4) on port, or nil.
func (p *Policy) MatchAddr(a netip.Addr, port uint16) *Rule {
	if i := p.matchAddr(a, port); i >= 0 {
		return &p.Prefixes[i]
	}
	return nil
}

func (p *Policy) matchAddr(a netip.Addr, port uint16) int {
	a = a.Unmap().WithZone("")
	for i := range p.Prefixes {
		r := &p.Prefixes[i]
		if r.Prefix.Contains(a) && r.port(port) {
			return i
		}
	}
	return -1
}

// normName lowercases host and drops one trailing dot, without allocating when host is already
// in that form.
func normName(host string) string {
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

func nameMatches(r *Rule, host string) bool {
	if !r.Wildcard {
		return host == r.Name
	}
	n := len(host) - len(r.Name)
	return n > 1 && host[n-1] == '.' && host[n:] == r.Name
}
