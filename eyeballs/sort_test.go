package eyeballs

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func cands(ss ...string) []candidate {
	var out []candidate
	for _, s := range ss {
		out = append(out, candidate{addr: netip.MustParseAddr(s)})
	}
	return out
}

func addrsOf(cs []candidate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.addr.String())
	}
	return out
}

func TestSortAndArrange(t *testing.T) {
	tests := []struct {
		name  string
		s     sorter
		in    []string
		tried []string
		count int
		want  []string
	}{
		{"native IPv6 before IPv4 via NAT64", sorter{hasNAT64: true}, []string{"192.0.2.1", "2001:db8::1"}, nil, 1,
			[]string{"2001:db8::1", "192.0.2.1"}},
		{"IPv6 (40) before native IPv4 (35)", sorter{v4route: true}, []string{"192.0.2.1", "2001:db8::1"}, nil, 1,
			[]string{"2001:db8::1", "192.0.2.1"}},
		{"native IPv4 before ULA (precedence 3)", sorter{v4route: true}, []string{"fd00::1", "192.0.2.1"}, nil, 1,
			[]string{"192.0.2.1", "fd00::1"}},
		{"ULA before IPv4 via NAT64 (label)", sorter{hasNAT64: true}, []string{"192.0.2.1", "fd00::1"}, nil, 1,
			[]string{"fd00::1", "192.0.2.1"}},
		{"loopback first", sorter{}, []string{"2001:db8::1", "::1"}, nil, 1, []string{"::1", "2001:db8::1"}},
		{"IPv4 without route nor NAT64 last", sorter{}, []string{"192.0.2.1", "127.0.0.1", "2001:db8::1"}, nil, 1,
			[]string{"2001:db8::1", "127.0.0.1", "192.0.2.1"}},
		{"link-local without zone last", sorter{}, []string{"fe80::1", "2001:db8::1"}, nil, 1, []string{"2001:db8::1", "fe80::1"}},
		{"teredo after 6to4 and native", sorter{}, []string{"2001:0:1::1", "2002:c000:201::1", "2001:db8::1"}, nil, 1,
			[]string{"2001:db8::1", "2002:c000:201::1", "2001:0:1::1"}},
		{"history winner first, then interleave from its family", sorter{hasNAT64: true, winner: netip.MustParseAddr("192.0.2.2")},
			[]string{"2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2"}, nil, 1,
			[]string{"192.0.2.2", "2001:db8::1", "192.0.2.1", "2001:db8::2"}},
		{"interleave 6,4,6,4 keeps answer order", sorter{hasNAT64: true},
			[]string{"2001:db8::1", "2001:db8::2", "2001:db8::3", "192.0.2.1", "192.0.2.2"}, nil, 1,
			[]string{"2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2", "2001:db8::3"}},
		{"count 2: 6,6,4,6,4", sorter{hasNAT64: true},
			[]string{"192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2", "2001:db8::3"}, nil, 2,
			[]string{"2001:db8::1", "2001:db8::2", "192.0.2.1", "2001:db8::3", "192.0.2.2"}},
		{"count 2 continues the leading run", sorter{hasNAT64: true},
			[]string{"192.0.2.1", "2001:db8::2"}, []string{"2001:db8::1"}, 2,
			[]string{"2001:db8::2", "192.0.2.1"}},
		{"tail continues after the last family tried", sorter{hasNAT64: true},
			[]string{"192.0.2.2", "2001:db8::1"}, []string{"192.0.2.1"}, 1,
			[]string{"2001:db8::1", "192.0.2.2"}},
		{"one family only", sorter{}, []string{"2001:db8::1", "2001:db8::2"}, nil, 1, []string{"2001:db8::1", "2001:db8::2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := cands(tc.in...)
			tc.s.sort(cs)
			got := addrsOf(arrange(cs, cands(tc.tried...), tc.count))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	if arrange(nil, nil, 1) != nil {
		t.Error("arrange(nil) not nil")
	}
}

func TestDefaults(t *testing.T) {
	var d Dialer
	if d.firstFamilyCount() != 1 || d.resolutionDelay() != 50*time.Millisecond || d.attemptDelay() != 250*time.Millisecond ||
		d.maxConcurrent() != 4 || d.timeout() != 10*time.Second || d.historySize() != 1024 ||
		d.historyTTL() != 10*time.Minute || d.routeProbeInterval() != 30*time.Second {
		t.Error("zero-value defaults wrong")
	}
	for _, tc := range []struct{ in, want time.Duration }{{time.Millisecond, 10 * time.Millisecond},
		{time.Minute, 2 * time.Second}, {100 * time.Millisecond, 100 * time.Millisecond}, {-1, 10 * time.Millisecond}} {
		if got := (&Dialer{AttemptDelay: tc.in}).attemptDelay(); got != tc.want {
			t.Errorf("AttemptDelay %v -> %v, want %v", tc.in, got, tc.want)
		}
	}
	if (&Dialer{ResolutionDelay: -1}).resolutionDelay() != 0 || (&Dialer{HistorySize: -1}).historySize() != 0 {
		t.Error("negative settings")
	}
}

func TestHistoryBounds(t *testing.T) {
	d := &Dialer{HistorySize: 3, HistoryTTL: time.Hour}
	a := netip.MustParseAddr("2001:db8::1")
	for _, h := range []string{"a", "b", "c", "d"} {
		d.remember(h, a, time.Millisecond, time.Now())
	}
	if len(d.hist) != 3 {
		t.Fatalf("%d entries, want 3", len(d.hist))
	}
	if _, ok := d.winner("d", time.Now()); !ok {
		t.Error("newest entry missing")
	}
	off := &Dialer{HistorySize: -1}
	off.remember("a", a, 0, time.Now())
	if _, ok := off.winner("a", time.Now()); ok || off.hist != nil {
		t.Error("history kept while disabled")
	}
}

func TestRouteProbe(t *testing.T) {
	d := &Dialer{RouteProbeInterval: time.Hour}
	first := d.hasIPv4Route(time.Now()) // whatever this machine has, the answer is cached
	at := d.routeAt
	if d.hasIPv4Route(time.Now()) != first || d.routeAt != at {
		t.Error("probe result not reused")
	}
	t.Logf("IPv4 route here: %v", first)
}

func FuzzArrange(f *testing.F) {
	f.Add([]byte{6, 6, 4, 4, 6}, uint8(1), uint8(0))
	f.Add([]byte{4, 6, 6, 6, 4}, uint8(2), uint8(1))
	f.Fuzz(func(t *testing.T, fams []byte, count, tried uint8) {
		var cs []candidate
		for i, b := range fams {
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
			if b%2 == 0 {
				a = netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)})
			}
			cs = append(cs, candidate{addr: a})
		}
		n := min(int(tried), len(cs))
		got := arrange(cs[n:], cs[:n], max(int(count%4), 1))
		if len(got) != len(cs)-n {
			t.Fatalf("arrange returned %d of %d", len(got), len(cs)-n)
		}
		seen := map[netip.Addr]bool{}
		for _, c := range got {
			if seen[c.addr] || !slices.ContainsFunc(cs[n:], func(o candidate) bool { return o.addr == c.addr }) {
				t.Fatalf("not a permutation: %v", addrsOf(got))
			}
			seen[c.addr] = true
		}
	})
}
