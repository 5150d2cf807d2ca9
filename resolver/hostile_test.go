package resolver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/resolver/dnstest"
)

// hostileTimeout and hostileAttempts are the resolver settings against a hostile server; a
// lookup must end within hostileBound (a UDP and a TCP try per attempt, plus slack).
const (
	hostileTimeout  = 300 * time.Millisecond
	hostileAttempts = 2
	hostileBound    = 2*hostileTimeout*hostileAttempts + time.Second
)

// hostileEnv starts a hostile server and a resolver pointed at it only (no search list, no
// hosts file); useVC writes "options use-vc" so that every query goes over TCP.
func hostileEnv(t *testing.T, cfg dnstest.HostileConfig, useVC bool) (*dnstest.Hostile, *Resolver) {
	t.Helper()
	h := dnstest.StartHostile(t, cfg)
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if useVC {
		if err := os.WriteFile(rc, []byte("options use-vc\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(Config{ResolvConf: rc, HostsFile: "-", Servers: []netip.AddrPort{h.Addr()},
		Search: []string{}, Timeout: hostileTimeout, Attempts: hostileAttempts, Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return h, r
}

// timedLookup runs one Lookup and returns its Answers by family and how long it took.
func timedLookup(t *testing.T, r *Resolver, host string) (v6, v4 Answer, elapsed time.Duration) {
	t.Helper()
	start := time.Now()
	v6, v4 = lookup(t, r, host)
	return v6, v4, time.Since(start)
}

// noPoison fails the test if a spoofed address was handed out or cached.
func noPoison(t *testing.T, r *Resolver, as ...Answer) {
	t.Helper()
	poisoned := func(a netip.Addr) bool { return a == dnstest.PoisonV4 || a == dnstest.PoisonV6 }
	for _, a := range as {
		if slices.ContainsFunc(a.Addrs, poisoned) {
			t.Errorf("IPv%d answer carries a spoofed address: %v", a.Family, a.Addrs)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, e := range r.entries {
		if slices.ContainsFunc(e.addrs, poisoned) {
			t.Errorf("cache entry %v holds a spoofed address: %v", k, e.addrs)
		}
	}
}

var (
	good6 = netip.MustParseAddr("2001:db8::1")
	good4 = netip.MustParseAddr("192.0.2.1")
)

// TestHostileServer: against each misbehaviour a Lookup ends within the bound with the
// sentinel the misbehaviour deserves (nil: the good addresses), hands out and caches no
// spoofed address, and leaves no goroutine or socket behind.
func TestHostileServer(t *testing.T) {
	tests := []struct {
		name  string
		cfg   dnstest.HostileConfig
		useVC bool
		want  error // for both families; nil means the good address
	}{
		{"silent", dnstest.HostileConfig{Mode: dnstest.Silent}, false, ErrTimeout},
		{"silent-tcp", dnstest.HostileConfig{Mode: dnstest.Silent}, true, ErrTimeout},
		{"answer", dnstest.HostileConfig{Mode: dnstest.Answer, TTL: 300}, false, nil},
		{"servfail", dnstest.HostileConfig{Mode: dnstest.ServFail}, false, ErrServFail},
		// A reply that does not match the query (ID, question, QR bit) may be a forgery or
		// a late reply to an earlier query: over UDP it is dropped and the wait goes on
		// (RFC 5452 §9.1), so a forgery alone ends in a timeout, and a forgery followed by
		// the real reply is no obstacle. Over TCP nobody off-path can inject, so a mismatch
		// is the server's fault.
		{"wrong-id", dnstest.HostileConfig{Mode: dnstest.WrongID}, false, ErrTimeout},
		{"wrong-id-then-answer", dnstest.HostileConfig{Mode: dnstest.WrongID, ThenAnswer: true}, false, nil},
		{"wrong-id-tcp", dnstest.HostileConfig{Mode: dnstest.WrongID}, true, ErrBadResponse},
		{"wrong-name", dnstest.HostileConfig{Mode: dnstest.WrongName}, false, ErrTimeout},
		{"wrong-name-then-answer", dnstest.HostileConfig{Mode: dnstest.WrongName, ThenAnswer: true}, false, nil},
		{"wrong-name-tcp", dnstest.HostileConfig{Mode: dnstest.WrongName}, true, ErrBadResponse},
		{"wrong-type", dnstest.HostileConfig{Mode: dnstest.WrongType}, false, ErrTimeout},
		{"wrong-type-then-answer", dnstest.HostileConfig{Mode: dnstest.WrongType, ThenAnswer: true}, false, nil},
		{"wrong-class", dnstest.HostileConfig{Mode: dnstest.WrongClass}, false, ErrTimeout},
		{"wrong-class-then-answer", dnstest.HostileConfig{Mode: dnstest.WrongClass, ThenAnswer: true}, false, nil},
		{"not-response", dnstest.HostileConfig{Mode: dnstest.NotResponse}, false, ErrTimeout},
		{"not-response-then-answer", dnstest.HostileConfig{Mode: dnstest.NotResponse, ThenAnswer: true}, false, nil},
		{"garbage", dnstest.HostileConfig{Mode: dnstest.Garbage, Seed: 1}, false, ErrTimeout},
		{"garbage-then-answer", dnstest.HostileConfig{Mode: dnstest.Garbage, Seed: 2, ThenAnswer: true}, false, nil},
		{"garbage-tcp", dnstest.HostileConfig{Mode: dnstest.Garbage, Seed: 3}, true, ErrBadResponse},
		// A reply that matches the query but cannot be parsed is the server's answer, and a
		// bad one.
		{"garbage-body", dnstest.HostileConfig{Mode: dnstest.GarbageBody, Seed: 4}, false, ErrBadResponse},
		{"cut-mid-record", dnstest.HostileConfig{Mode: dnstest.CutMidRecord}, false, ErrBadResponse},
		{"pointer-self", dnstest.HostileConfig{Mode: dnstest.PointerSelf}, false, ErrBadResponse},
		{"pointer-pair", dnstest.HostileConfig{Mode: dnstest.PointerPair}, false, ErrBadResponse},
		// The TC bit sends the question to TCP even when the rest of the datagram is cut
		// mid-record (RFC 2181 §9).
		{"truncated", dnstest.HostileConfig{Mode: dnstest.Truncated}, false, nil},
		{"cut-mid-record-tc", dnstest.HostileConfig{Mode: dnstest.CutMidRecordTC}, false, nil},
		{"tcp-silent", dnstest.HostileConfig{Mode: dnstest.TCPSilent}, false, ErrTimeout},
		{"tcp-stall", dnstest.HostileConfig{Mode: dnstest.TCPStall}, false, ErrTimeout},
		{"cname-loop", dnstest.HostileConfig{Mode: dnstest.CNAMELoop, TTL: 60}, false, ErrBadResponse},
		{"cname-chain-at-bound", dnstest.HostileConfig{Mode: dnstest.CNAMEChain, ChainLength: maxCNAMEDepth, TTL: 60}, false, nil},
		{"cname-chain-past-bound", dnstest.HostileConfig{Mode: dnstest.CNAMEChain, ChainLength: maxCNAMEDepth + 1, TTL: 60}, false, ErrBadResponse},
		{"cname-chain-1000", dnstest.HostileConfig{Mode: dnstest.CNAMEChain, ChainLength: 1000, TTL: 60}, false, ErrBadResponse},
		{"cname-endless", dnstest.HostileConfig{Mode: dnstest.CNAMEEndless, TTL: 60}, false, ErrBadResponse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			h, r := hostileEnv(t, tc.cfg, tc.useVC)
			v6, v4, elapsed := timedLookup(t, r, "host.example.")
			t.Logf("%s: %v in %v (%d udp, %d tcp questions)", tc.name, errOrAddrs(v4), elapsed.Round(time.Millisecond),
				h.Queries("udp"), h.Queries("tcp"))
			if elapsed > hostileBound {
				t.Errorf("lookup took %v, bound %v", elapsed, hostileBound)
			}
			noPoison(t, r, v6, v4)
			for _, a := range []Answer{v6, v4} {
				want := []netip.Addr{good4}
				if a.Family == 6 {
					want = []netip.Addr{good6}
				}
				switch {
				case tc.want == nil && (a.Err != nil || !slices.Equal(a.Addrs, want)):
					t.Errorf("IPv%d: %v %v, want %v", a.Family, a.Addrs, a.Err, want)
				case tc.want != nil && !errors.Is(a.Err, tc.want):
					t.Errorf("IPv%d: %v %v, want an error wrapping %q", a.Family, a.Addrs, a.Err, tc.want)
				}
			}
			if tc.cfg.Mode == dnstest.CNAMEEndless {
				if n := h.Queries(""); n > 2*(maxCNAMEDepth+1) {
					t.Errorf("an endless chain cost %d questions, want at most %d", n, 2*(maxCNAMEDepth+1))
				}
			}
		})
	}
}

func errOrAddrs(a Answer) any {
	if a.Err != nil {
		return a.Err
	}
	if len(a.Addrs) > 3 {
		return len(a.Addrs)
	}
	return a.Addrs
}

// TestHostileHugeAnswer: an answer of thousands of records (as many as one 64 KiB TCP
// message holds, or a header claiming 10,000) yields the first maxAddrs addresses, in the
// server's order, so that Happy Eyeballs never has thousands of attempts to make.
func TestHostileHugeAnswer(t *testing.T) {
	tests := []struct {
		name    string
		cfg     dnstest.HostileConfig
		want    int
		minSize int // records the server sent at least (0: want)
	}{
		{"at-bound", dnstest.HostileConfig{Mode: dnstest.Huge, Records: maxAddrs, TTL: 60}, maxAddrs, 0},
		{"past-bound", dnstest.HostileConfig{Mode: dnstest.Huge, Records: maxAddrs + 1, TTL: 60}, maxAddrs, 0},
		{"full-message", dnstest.HostileConfig{Mode: dnstest.Huge, TTL: 60}, maxAddrs, 2000},
		{"claims-10000", dnstest.HostileConfig{Mode: dnstest.HugeClaim, TTL: 60}, maxAddrs, 2000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			h, r := hostileEnv(t, tc.cfg, false)
			v6, v4, elapsed := timedLookup(t, r, "huge.example.")
			t.Logf("%s: %d + %d addresses in %v (%d udp, %d tcp questions)", tc.name, len(v6.Addrs), len(v4.Addrs),
				elapsed.Round(time.Millisecond), h.Queries("udp"), h.Queries("tcp"))
			if elapsed > hostileBound {
				t.Errorf("lookup took %v, bound %v", elapsed, hostileBound)
			}
			for _, a := range []Answer{v6, v4} {
				first := good4
				if a.Family == 6 {
					first = good6
				}
				if a.Err != nil || len(a.Addrs) != tc.want || a.Addrs[0] != first || a.Addrs[len(a.Addrs)-1] != nth(first, tc.want-1) {
					t.Errorf("IPv%d: %d addresses (%v), want the first %d from %v", a.Family, len(a.Addrs), a.Err, tc.want, first)
				}
			}
			r.mu.Lock()
			for k, e := range r.entries {
				if len(e.addrs) > maxAddrs {
					t.Errorf("cache entry %v holds %d addresses", k, len(e.addrs))
				}
			}
			r.mu.Unlock()
			if tc.minSize > 0 && h.Queries("tcp") < 2 {
				t.Errorf("%d TCP questions, want the huge answer fetched over TCP for both families", h.Queries("tcp"))
			}
		})
	}
}

func nth(a netip.Addr, n int) netip.Addr {
	for range n {
		a = a.Next()
	}
	return a
}

// TestHostileTTLs: TTL 0 is cached for MinTTL; a TTL with the top bit set (2^31, 2^32-1)
// means 0 (RFC 2181 §8), not 68 or 136 years; 2^31-1 is capped at MaxTTL.
func TestHostileTTLs(t *testing.T) {
	tests := []struct {
		ttl  uint32
		want time.Duration
	}{
		{0, defaultMinTTL},
		{1, defaultMinTTL},
		{300, 300 * time.Second},
		{math.MaxInt32, defaultMaxTTL},
		{math.MaxInt32 + 1, defaultMinTTL},
		{math.MaxUint32, defaultMinTTL},
	}
	for _, tc := range tests {
		for _, mode := range []dnstest.Mode{dnstest.Answer, dnstest.CNAMEChain} {
			t.Run(fmt.Sprintf("%v-%d", mode, tc.ttl), func(t *testing.T) {
				leakCheck(t)
				_, r := hostileEnv(t, dnstest.HostileConfig{Mode: mode, TTL: tc.ttl, ChainLength: 2}, false)
				v6, v4, _ := timedLookup(t, r, "ttl.example.")
				for _, a := range []Answer{v6, v4} {
					if a.Err != nil || a.TTL != tc.want {
						t.Errorf("TTL %d: IPv%d answer %v with TTL %v, want %v", tc.ttl, a.Family, a.Err, a.TTL, tc.want)
					}
				}
			})
		}
	}
}

// TestHostileManyLookups: many concurrent lookups against a silent server all end within
// the bound, and every goroutine and socket they used is gone afterwards.
func TestHostileManyLookups(t *testing.T) {
	leakCheck(t)
	_, r := hostileEnv(t, dnstest.HostileConfig{Mode: dnstest.Silent}, false)
	ctx, cancel := context.WithTimeout(context.Background(), hostileBound)
	defer cancel()
	start := time.Now()
	chans := make([]<-chan Answer, 100)
	for i := range chans {
		chans[i] = r.Lookup(ctx, "n"+string(rune('a'+i%26))+string(rune('a'+i/26))+".example.")
	}
	for _, ch := range chans {
		for a := range ch {
			if !errors.Is(a.Err, ErrTimeout) {
				t.Errorf("IPv%d %s: %v, want a timeout", a.Family, a.Name, a.Err)
			}
		}
	}
	if elapsed := time.Since(start); elapsed > hostileBound+time.Second {
		t.Errorf("100 lookups took %v", elapsed)
	}
}

// TestHostileIgnoredRepliesCounted: every forged datagram dropped is counted.
func TestHostileIgnoredRepliesCounted(t *testing.T) {
	leakCheck(t)
	h := dnstest.StartHostile(t, dnstest.HostileConfig{Mode: dnstest.WrongID, ThenAnswer: true})
	m := NewMetrics(nil)
	r, err := New(Config{ResolvConf: filepath.Join(t.TempDir(), "resolv.conf"), HostsFile: "-",
		Servers: []netip.AddrPort{h.Addr()}, Search: []string{}, Timeout: hostileTimeout, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if v6, v4 := lookup(t, r, "host.example."); v6.Err != nil || v4.Err != nil {
		t.Fatalf("lookup: %v / %v", v6.Err, v4.Err)
	}
	if got := counter(m.IgnoredReplies); got != 2 {
		t.Errorf("ignored_replies_total = %v, want 2 (one forgery per family)", got)
	}
}
