package nat64

import (
	"fmt"
	"net/netip"
)

// Policy decides which IPv4 destinations may be reached through a NAT64 prefix. The zero value
// is the default policy.
type Policy struct {
	// Strict refuses non-global IPv4 addresses (RFC 1918, 100.64.0.0/10, the documentation and
	// benchmarking ranges, 192.0.0.0/24) with the Well-Known Prefix, as RFC 6052 §3.1 requires.
	// Network-Specific Prefixes still carry them. If false (the default) they are allowed with the
	// WKP too, because many DNS64/NAT64 deployments (and draft-ietf-v6ops-nat64-wkp-1918) do so.
	Strict bool
}

// neverSynthesize lists host- and network-scoped IPv4 ranges that are never reached through
// NAT64, whatever the prefix (HEv3 §8.1 plus multicast and reserved space).
var neverSynthesize = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"), // includes 255.255.255.255
}

// nonGlobal lists the remaining non-global ranges of RFC 5735 §3 and the IANA special-purpose
// registry, refused with the WKP in strict mode (RFC 6052 §3.1).
var nonGlobal = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
}

// globalIn192000 are the globally reachable exceptions inside 192.0.0.0/24 (RFC 7723, RFC 8155).
var globalIn192000 = []netip.Addr{netip.MustParseAddr("192.0.0.9"), netip.MustParseAddr("192.0.0.10")}

// Check reports whether v4 may be synthesized with prefix. The error wraps ErrPolicy.
func (p Policy) Check(prefix netip.Prefix, v4 netip.Addr) error {
	v4 = v4.Unmap()
	if !v4.Is4() {
		return fmt.Errorf("%w: %s: %w", ErrPolicy, v4, ErrNotIPv4)
	}
	for _, r := range neverSynthesize {
		if r.Contains(v4) {
			return fmt.Errorf("%w: %s is host- or network-scoped (%s)", ErrPolicy, v4, r)
		}
	}
	if p.Strict && prefix.Masked() == WKP && !IsGlobal(v4) {
		return fmt.Errorf("%w: %s is not globally reachable and may not use the well-known prefix %s (RFC 6052 §3.1)",
			ErrPolicy, v4, WKP)
	}
	return nil
}

// IsGlobal reports whether an IPv4 address is globally reachable: outside the never-synthesize
// list and the non-global special-purpose ranges.
func IsGlobal(v4 netip.Addr) bool {
	v4 = v4.Unmap()
	if !v4.Is4() {
		return false
	}
	for _, a := range globalIn192000 {
		if v4 == a {
			return true
		}
	}
	for _, list := range [][]netip.Prefix{neverSynthesize, nonGlobal} {
		for _, r := range list {
			if r.Contains(v4) {
				return false
			}
		}
	}
	return true
}
