package resolver

import (
	"bufio"
	"io"
	"net/netip"
	"slices"
	"strings"
)

// Hosts maps lower-case absolute names (with a trailing dot) to their addresses, in file order.
type Hosts map[string][]netip.Addr

// ParseHosts reads hosts(5) syntax: an address, then one or more names; '#' starts a comment.
// Lines whose address does not parse are skipped; only a read error fails.
func ParseHosts(rd io.Reader) (Hosts, error) {
	h := Hosts{}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		a = a.Unmap()
		for _, name := range f[1:] {
			key := absName(name)
			if key == "." || containsAddr(h[key], a) {
				continue
			}
			h[key] = append(h[key], a)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return h, nil
}

// Lookup returns the addresses of one family (6 or 4) for name, and whether the name is
// listed at all (in either family).
func (h Hosts) Lookup(name string, family int) (addrs []netip.Addr, listed bool) {
	all, ok := h[absName(name)]
	if !ok {
		return nil, false
	}
	for _, a := range all {
		if familyOf(a) == family {
			addrs = append(addrs, a)
		}
	}
	return addrs, true
}

// without is h less every address inside one of skip; a name left with none is dropped.
func (h Hosts) without(skip []netip.Prefix) Hosts {
	out := make(Hosts, len(h))
	for name, addrs := range h {
		var keep []netip.Addr
		for _, a := range addrs {
			if !slices.ContainsFunc(skip, func(p netip.Prefix) bool { return p.Contains(a.Unmap()) }) {
				keep = append(keep, a)
			}
		}
		if len(keep) > 0 {
			out[name] = keep
		}
	}
	return out
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if a == b {
			return true
		}
	}
	return false
}

// absName lower-cases name and gives it exactly one trailing dot.
func absName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, ".")) + "."
}

func familyOf(a netip.Addr) int {
	if a.Is4() || a.Is4In6() {
		return 4
	}
	return 6
}
