// Package resolver is a stub DNS resolver on github.com/miekg/dns for the outbound proxy.
package resolver

import "net/netip"

// Answer is one family's result for a lookup, streamed as soon as it is known.
type Answer struct {
	// Family is 6 for AAAA, 4 for A.
	Family int
	// Name is the candidate name (after search-list expansion) the addresses belong to.
	Name  string
	Addrs []netip.Addr
	// Err is set (wrapping one of the sentinels) when this family yielded nothing.
	Err error
}
