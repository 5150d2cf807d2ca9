// Package nat64 maps IPv4 addresses into IPv6 and back (RFC 6052), guards which IPv4
// destinations may be synthesized (the never-synthesize list and RFC 6052 §3.1 for the
// Well-Known Prefix), and keeps the NAT64 prefixes in use: configured, discovered with RFC 7050
// (the ipv4only.arpa. AAAA query, refreshed before its TTL expires) or the Well-Known Prefix as
// a fallback.
//
// It does not know about sockets or DNS wire formats: discovery goes through the small Querier
// interface, which the resolver package satisfies.
package nat64

import (
	"fmt"
	"net/netip"
)

// WKP is the Well-Known Prefix 64:ff9b::/96 (RFC 6052 §2.1).
var WKP = netip.MustParsePrefix("64:ff9b::/96")

// uOctet is the index of bits 64-71, which must be zero in every IPv4-embedded address.
const uOctet = 8

// ValidPrefix checks p against RFC 6052 §2.2: an IPv6 prefix (not IPv4-mapped, no zone) of
// length 32, 40, 48, 56, 64 or 96 whose bits 64-71 are zero (bits past the length do not count:
// they are masked off). It is the sidecar's only such rule: Prefixes keeps the configured
// prefixes that pass it, and config accepts a --nat64-prefix value by it. The error is a
// *PrefixError.
func ValidPrefix(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return &PrefixError{p, "not an IPv6 prefix"}
	}
	switch p.Bits() {
	case 32, 40, 48, 56, 64, 96:
	default:
		return &PrefixError{p, "length must be 32, 40, 48, 56, 64 or 96 (RFC 6052 §2.2)"}
	}
	if p.Masked().Addr().As16()[uOctet] != 0 {
		return &PrefixError{p, "bits 64-71 (the u octet) must be zero (RFC 6052 §2.2)"}
	}
	return nil
}

// PrefixError is a prefix ValidPrefix refuses and the rule it breaks. It wraps ErrBadPrefix.
type PrefixError struct {
	Prefix netip.Prefix
	Reason string // the rule broken, worded to follow "PREFIX: "
}

func (e *PrefixError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrBadPrefix, e.Prefix, e.Reason)
}

func (e *PrefixError) Unwrap() error { return ErrBadPrefix }

// positions returns the byte offsets in the 16-byte address that hold the four IPv4 octets
// for a prefix of the given length (RFC 6052 §2.2 table), skipping the u octet.
func positions(bits int) (pos [4]int, ok bool) {
	start := bits / 8
	switch bits {
	case 32, 40, 48, 56, 64, 96:
	default:
		return pos, false
	}
	i := start
	for k := range pos {
		if i == uOctet {
			i++
		}
		pos[k] = i
		i++
	}
	return pos, true
}

// Compose embeds v4 into prefix (RFC 6052 §2.3): prefix bits, the IPv4 octets around a zero u
// octet, and a zero suffix. The prefix must pass ValidPrefix; bits beyond its length are
// ignored. Compose does not apply any policy (see Policy.Check).
func Compose(prefix netip.Prefix, v4 netip.Addr) (netip.Addr, error) {
	if err := ValidPrefix(prefix); err != nil {
		return netip.Addr{}, err
	}
	v4 = v4.Unmap()
	if !v4.Is4() {
		return netip.Addr{}, fmt.Errorf("%w: %s", ErrNotIPv4, v4)
	}
	pos, _ := positions(prefix.Bits())
	b := prefix.Masked().Addr().As16()
	four := v4.As4()
	for k, i := range pos {
		b[i] = four[k]
	}
	return netip.AddrFrom16(b), nil
}

// Extract returns the IPv4 address embedded in v6 under prefix, and whether v6 lies inside a
// valid RFC 6052 prefix at all. A non-zero u octet or suffix is ignored, as RFC 6052 §2.2 tells
// translators to do.
func Extract(prefix netip.Prefix, v6 netip.Addr) (netip.Addr, bool) {
	if ValidPrefix(prefix) != nil || !v6.Is6() || v6.Is4In6() || !prefix.Contains(v6.WithZone("")) {
		return netip.Addr{}, false
	}
	return extractAt(prefix.Bits(), v6), true
}

// extractAt reads the IPv4 octets at the positions for a prefix of length bits.
func extractAt(bits int, v6 netip.Addr) netip.Addr {
	pos, _ := positions(bits)
	b := v6.As16()
	return netip.AddrFrom4([4]byte{b[pos[0]], b[pos[1]], b[pos[2]], b[pos[3]]})
}
