package nat64

import (
	"net/netip"
	"slices"
	"testing"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// wkaPair composes both well-known addresses under prefix, as a DNS64 answers ipv4only.arpa.
func wkaPair(t testing.TB, prefix string) []netip.Addr {
	p := netip.MustParsePrefix(prefix)
	a, err1 := Compose(p, wka170)
	b, err2 := Compose(p, wka171)
	if err1 != nil || err2 != nil {
		t.Fatalf("compose %s: %v %v", prefix, err1, err2)
	}
	return []netip.Addr{a, b}
}

var findCases = []struct {
	name    string
	answers func(testing.TB) []netip.Addr
	want    []netip.Prefix
}{
	{"wkp", func(t testing.TB) []netip.Addr { return addrs("64:ff9b::c000:aa", "64:ff9b::c000:ab") }, prefixes("64:ff9b::/96")},
	{"wkp only .170", func(t testing.TB) []netip.Addr { return addrs("64:ff9b::192.0.0.170") }, prefixes("64:ff9b::/96")},
	{"nsp /96", func(t testing.TB) []netip.Addr { return wkaPair(t, "2001:db8:64:ff9b::/96") }, prefixes("2001:db8:64:ff9b::/96")},
	{"nsp /64", func(t testing.TB) []netip.Addr { return wkaPair(t, "2001:db8:1:2::/64") }, prefixes("2001:db8:1:2::/64")},
	{"nsp /56", func(t testing.TB) []netip.Addr { return wkaPair(t, "2001:db8:1:200::/56") }, prefixes("2001:db8:1:200::/56")},
	{"nsp /48", func(t testing.TB) []netip.Addr { return wkaPair(t, "2001:db8:1::/48") }, prefixes("2001:db8:1::/48")},
	{"nsp /40", func(t testing.TB) []netip.Addr { return wkaPair(t, "2001:db8:100::/40") }, prefixes("2001:db8:100::/40")},
	{"nsp /32", func(t testing.TB) []netip.Addr { return wkaPair(t, "2001:db8::/32") }, prefixes("2001:db8::/32")},
	{"two prefixes, order kept", func(t testing.TB) []netip.Addr {
		return append(wkaPair(t, "2001:db8:2::/96"), wkaPair(t, "2001:db8:1::/48")...)
	}, prefixes("2001:db8:2::/96", "2001:db8:1::/48")},
	{"two prefixes, interleaved answers", func(t testing.TB) []netip.Addr {
		a, b := wkaPair(t, "2001:db8:1::/48"), wkaPair(t, "64:ff9b::/96")
		return []netip.Addr{a[0], b[0], a[1], b[1]}
	}, prefixes("2001:db8:1::/48", "64:ff9b::/96")},
	{"prefix contains c000:aa (/64)", func(t testing.TB) []netip.Addr { return wkaPair(t, "2001:db8:c000:aa::/64") },
		prefixes("2001:db8:c000:aa::/64")},
	{"prefix contains c000:ab (/64), reverse order", func(t testing.TB) []netip.Addr {
		p := wkaPair(t, "2001:db8:c000:ab::/64")
		return []netip.Addr{p[1], p[0]}
	}, prefixes("2001:db8:c000:ab::/64")},
	{"prefix contains c000:aa (/96)", func(t testing.TB) []netip.Addr { return wkaPair(t, "2001:db8:c000:aa::/96") },
		prefixes("2001:db8:c000:aa::/96")},
	{"prefix contains c000:aa, only .170 answered", func(t testing.TB) []netip.Addr {
		return wkaPair(t, "2001:db8:c000:aa::/64")[:1]
	}, prefixes("2001:db8:c000:aa::/64")},
	{"duplicates", func(t testing.TB) []netip.Addr {
		return append(wkaPair(t, "64:ff9b::/96"), wkaPair(t, "64:ff9b::/96")...)
	}, prefixes("64:ff9b::/96")},
	{"no well-known address (captive portal)", func(t testing.TB) []netip.Addr { return addrs("2001:db8::1", "64:ff9b::c000:201") }, nil},
	{"u octet set", func(t testing.TB) []netip.Addr { return addrs("2001:db8:1:2:ff:c000:aa00::") }, nil},
	{"ipv4-mapped and zero prefix", func(t testing.TB) []netip.Addr { return addrs("::ffff:192.0.0.170", "::192.0.0.170") }, nil},
	{"empty", func(t testing.TB) []netip.Addr { return nil }, nil},
}

func TestFindPrefixes(t *testing.T) {
	for _, tc := range findCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := FindPrefixes(tc.answers(t)); !slices.Equal(got, tc.want) {
				t.Fatalf("FindPrefixes = %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzFindPrefixes(f *testing.F) {
	for _, tc := range findCases {
		var b []byte
		for _, a := range tc.answers(f) {
			s := a.As16()
			b = append(b, s[:]...)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var as []netip.Addr
		for len(b) >= 16 {
			as = append(as, netip.AddrFrom16([16]byte(b[:16])))
			b = b[16:]
		}
		for _, p := range FindPrefixes(as) {
			if ValidPrefix(p) != nil {
				t.Fatalf("invalid prefix %s from %v", p, as)
			}
			found := false
			for _, a := range as {
				v4, ok := Extract(p, a)
				found = found || (ok && (v4 == wka170 || v4 == wka171))
			}
			if !found {
				t.Fatalf("prefix %s carries no well-known address in %v", p, as)
			}
		}
	})
}
