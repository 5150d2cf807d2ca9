package nat64

import (
	"net/netip"
	"slices"
)

// WellKnownName is the name whose AAAA answer reveals a DNS64's prefixes (RFC 7050 §2.2, RFC 8880).
const WellKnownName = "ipv4only.arpa."

// The well-known IPv4 addresses of ipv4only.arpa. (RFC 7050 §2.2).
var (
	wka170 = netip.AddrFrom4([4]byte{192, 0, 0, 170})
	wka171 = netip.AddrFrom4([4]byte{192, 0, 0, 171})
)

// lengths are the RFC 6052 prefix lengths, longest first.
var lengths = [...]int{96, 64, 56, 48, 40, 32}

// hit is one place where a well-known address sits in an answer.
type hit struct {
	prefix netip.Prefix
	wka    netip.Addr
	// zeroSuffix is true when every bit after the embedded IPv4 address is zero.
	zeroSuffix bool
}

// FindPrefixes returns the NAT64 prefixes revealed by the AAAA answers for ipv4only.arpa.
// (RFC 7050 §3), in the order of the answers, without duplicates. For every answer it tries all
// six RFC 6052 positions for 192.0.0.170 and 192.0.0.171. When an answer holds a well-known
// address at more than one position (a prefix that itself contains c000:aa or c000:ab), the
// position is chosen by the other well-known address, as RFC 7050 §3 describes: the prefix that
// also carries the other well-known address in some answer wins, then the one with a zero
// suffix; an answer that stays ambiguous is skipped.
func FindPrefixes(answers []netip.Addr) []netip.Prefix {
	hits := make([][]hit, len(answers))
	for i, a := range answers {
		hits[i] = findHits(a)
	}
	var out []netip.Prefix
	for i := range answers {
		p, ok := choose(hits[i], hits)
		if ok && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// findHits lists the valid positions at which a well-known address appears in a.
func findHits(a netip.Addr) []hit {
	if !a.Is6() || a.Is4In6() {
		return nil
	}
	b := a.As16()
	if b[uOctet] != 0 {
		// Bits 64-71 are zero in every IPv4-embedded address, whatever the prefix length.
		return nil
	}
	var hs []hit
	for _, bits := range lengths {
		v4 := extractAt(bits, a)
		if v4 != wka170 && v4 != wka171 {
			continue
		}
		p := netip.PrefixFrom(a.WithZone(""), bits).Masked()
		if !plausiblePrefix(p) {
			continue
		}
		pos, _ := positions(bits)
		zero := true
		for i := pos[3] + 1; i < 16; i++ {
			zero = zero && b[i] == 0
		}
		hs = append(hs, hit{prefix: p, wka: v4, zeroSuffix: zero})
	}
	return hs
}

// plausiblePrefix rejects prefixes no translator uses: multicast, link-local, loopback and the
// all-zero or IPv4-mapped space (the FreeBSD nat64 checks).
func plausiblePrefix(p netip.Prefix) bool {
	a := p.Addr()
	if a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsLoopback() {
		return false
	}
	return !netip.MustParsePrefix("::/80").Overlaps(p)
}

// choose picks the prefix of one answer from its hits; all holds the hits of every answer.
func choose(own []hit, all [][]hit) (netip.Prefix, bool) {
	switch len(own) {
	case 0:
		return netip.Prefix{}, false
	case 1:
		return own[0].prefix, true
	}
	if p, ok := unique(own, func(h hit) bool { return confirmed(h, all) }); ok {
		return p, true
	}
	return unique(own, func(h hit) bool { return h.zeroSuffix })
}

// unique returns the prefix of the only hit that satisfies keep.
func unique(hs []hit, keep func(hit) bool) (netip.Prefix, bool) {
	var found []netip.Prefix
	for _, h := range hs {
		if keep(h) && !slices.Contains(found, h.prefix) {
			found = append(found, h.prefix)
		}
	}
	if len(found) != 1 {
		return netip.Prefix{}, false
	}
	return found[0], true
}

// confirmed reports whether some answer carries the other well-known address under h's prefix.
func confirmed(h hit, all [][]hit) bool {
	for _, hs := range all {
		for _, o := range hs {
			if o.prefix == h.prefix && o.wka != h.wka {
				return true
			}
		}
	}
	return false
}
