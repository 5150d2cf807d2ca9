package eyeballs

import (
	"net/netip"
	"slices"
)

// candidate is one destination address in its sorting form: IPv6 for native IPv6, IPv4 for A
// answers, literals and de-synthesized DNS64 answers (HEv3 §8.2). An IPv4 candidate is
// synthesized again at connect time when it has no IPv4 route.
type candidate struct {
	addr netip.Addr
}

func (c candidate) family() int {
	if c.addr.Is4() {
		return 4
	}
	return 6
}

// policyRow is one line of the RFC 6724 §2.1 default policy table.
type policyRow struct {
	prefix     netip.Prefix
	precedence int
}

// policyTable is RFC 6724 §2.1, longest prefix first. IPv4 is looked up as IPv4-mapped.
var policyTable = []policyRow{
	{netip.MustParsePrefix("::1/128"), 50},
	{netip.MustParsePrefix("::ffff:0:0/96"), 35},
	{netip.MustParsePrefix("::/96"), 1},
	{netip.MustParsePrefix("2001::/32"), 5},
	{netip.MustParsePrefix("2002::/16"), 30},
	{netip.MustParsePrefix("3ffe::/16"), 1},
	{netip.MustParsePrefix("fec0::/10"), 1},
	{netip.MustParsePrefix("fc00::/7"), 3},
	{netip.MustParsePrefix("::/0"), 40},
}

func precedence(a netip.Addr) int {
	if a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	a = a.WithZone("")
	for _, r := range policyTable {
		if r.prefix.Contains(a) {
			return r.precedence
		}
	}
	return 40
}

// Scopes of RFC 4007 / RFC 6724 §3.2, smaller is narrower.
const (
	scopeLink   = 2
	scopeSite   = 5
	scopeGlobal = 14
)

func scope(a netip.Addr) int {
	switch {
	case a.IsLoopback(), a.IsLinkLocalUnicast():
		return scopeLink
	case a.Is6() && netip.MustParsePrefix("fec0::/10").Contains(a.WithZone("")):
		return scopeSite
	}
	return scopeGlobal
}

// sortKey holds what the simplified RFC 6724 §6 rules compare; see less.
type sortKey struct {
	unusable   bool // rule 1
	winner     bool // history: this address won the last race to this host
	viaNAT64   bool // rule 5: an IPv6 source (label 1) for an IPv4 destination (label 4)
	precedence int  // rule 6
	scope      int  // rule 8
}

// less orders two keys: usable first, then the history winner, then the RFC 6724 rules. The
// history rule sits above rules 5-8 (RFC 8305 §4 puts it after rule 8) so that a recent success
// through IPv4 can win over the default IPv6 preference; entries expire, so clients converge.
func (a sortKey) less(b sortKey) bool {
	switch {
	case a.unusable != b.unusable:
		return !a.unusable
	case a.winner != b.winner:
		return a.winner
	case a.viaNAT64 != b.viaNAT64:
		return !a.viaNAT64
	case a.precedence != b.precedence:
		return a.precedence > b.precedence
	}
	return a.scope < b.scope
}

// sorter holds the per-race facts the sort depends on.
type sorter struct {
	v4route  bool
	hasNAT64 bool
	winner   netip.Addr
}

func (s sorter) key(c candidate) sortKey {
	k := sortKey{winner: s.winner.IsValid() && c.addr == s.winner, precedence: precedence(c.addr), scope: scope(c.addr)}
	if c.addr.Is4() && !c.addr.IsLoopback() && !s.v4route {
		k.viaNAT64 = true
		k.unusable = !s.hasNAT64
	}
	if c.addr.Is6() && c.addr.IsLinkLocalUnicast() && c.addr.Zone() == "" {
		k.unusable = true // no interface to send on
	}
	return k
}

// sort orders cs in place, stably (rule 10 keeps the answer order).
func (s sorter) sort(cs []candidate) {
	slices.SortStableFunc(cs, func(a, b candidate) int {
		ka, kb := s.key(a), s.key(b)
		switch {
		case ka.less(kb):
			return -1
		case kb.less(ka):
			return 1
		}
		return 0
	})
}

// arrange returns sorted in attempt order, interleaving the families (RFC 8305 §4) so that the
// pattern continues after the candidates already tried: count of the first family, then one of
// each in turn. sorted must be sorted; tried is in start order.
func arrange(sorted, tried []candidate, count int) []candidate {
	if len(sorted) == 0 {
		return nil
	}
	return appendArranged(make([]candidate, 0, len(sorted)), sorted, tried, count)
}

// appendArranged appends sorted to dst in the order arrange returns. dst must not share memory
// with sorted. It walks sorted once per family instead of splitting it, so that a race's few
// candidates cost no allocation beyond dst.
func appendArranged(dst, sorted, tried []candidate, count int) []candidate {
	fam, run := leadingRun(sorted, tried, count)
	var next [2]int // per family (famIndex), where in sorted to look for its next candidate
	for added := 0; added < len(sorted); {
		n := 0
		for i := &next[famIndex(fam)]; n < run && seek(sorted, fam, i); *i++ {
			dst = append(dst, sorted[*i])
			n++
		}
		added += n
		run = 1
		if n == 0 { // fam is exhausted: the rest is the other family, in order
			run = len(sorted)
		}
		fam = other(fam)
	}
	return dst
}

// leadingRun is the family the attempt order goes on with after tried, and how many of it
// come before the other family's turn.
func leadingRun(sorted, tried []candidate, count int) (fam, run int) {
	lead := 0
	for lead < len(tried) && tried[lead].family() == tried[0].family() {
		lead++
	}
	switch {
	case len(tried) == 0:
		return sorted[0].family(), count
	case lead == len(tried) && lead < count:
		return tried[0].family(), count - lead
	}
	return other(tried[len(tried)-1].family()), 1
}

// seek moves *i to the next candidate of family fam in cs, and reports whether there is one.
func seek(cs []candidate, fam int, i *int) bool {
	for *i < len(cs) && cs[*i].family() != fam {
		*i++
	}
	return *i < len(cs)
}

func famIndex(fam int) int {
	if fam == 4 {
		return 0
	}
	return 1
}

func other(fam int) int {
	if fam == 4 {
		return 6
	}
	return 4
}
