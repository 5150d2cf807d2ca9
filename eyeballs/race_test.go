package eyeballs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/resolver"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	v6a, v6b, v6c = "2001:db8::a", "2001:db8::b", "2001:db8::c"
	v4a, v4b      = "198.51.100.10", "198.51.100.11"
)

type raceCase struct {
	name    string
	host    string
	answers []timedAnswer
	closeAt time.Duration
	script  map[string]outcome
	setup   func(*Dialer)
	// want lists the attempts as "offset network addr".
	want        []string
	winner      string // "" when the race must fail
	elapsed     time.Duration
	check       func(t *testing.T, err error)
	maxInflight int
}

func fmtStarts(as []attemptRec) []string {
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("%v %s %s", a.at, a.network, a.addr))
	}
	return out
}

func isTimeoutErr(t *testing.T, err error) {
	var oe *net.OpError
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, os.ErrDeadlineExceeded) ||
		!errors.As(err, &oe) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("err = %v (%T), want a timeout *net.OpError", err, err)
	}
}

func errIs(target error) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		var oe *net.OpError
		if !errors.Is(err, target) || !errors.As(err, &oe) {
			t.Errorf("err = %v (%T), want a *net.OpError wrapping %v", err, err, target)
		}
	}
}

var raceCases = []raceCase{
	{
		name:    "interleave 6,4,6,4 with AttemptDelay",
		answers: []timedAnswer{{0, aaaa(v6a, v6b)}, {0, a4(v4a, v4b)}},
		setup:   func(d *Dialer) { d.Timeout = 2 * time.Second },
		want:    []string{"0s tcp6 " + v6a, "250ms tcp4 " + v4a, "500ms tcp6 " + v6b, "750ms tcp4 " + v4b},
		elapsed: 2 * time.Second, check: isTimeoutErr, maxInflight: 4,
	},
	{
		name:    "first family count 2",
		answers: []timedAnswer{{0, a4(v4a, v4b)}, {0, aaaa(v6a, v6b, v6c)}},
		setup:   func(d *Dialer) { d.FirstFamilyCount, d.MaxConcurrent, d.Timeout = 2, 8, 2*time.Second },
		want: []string{"0s tcp6 " + v6a, "250ms tcp6 " + v6b, "500ms tcp4 " + v4a, "750ms tcp6 " + v6c,
			"1s tcp4 " + v4b},
		elapsed: 2 * time.Second, check: isTimeoutErr,
	},
	{
		name:    "A first waits the resolution delay",
		answers: []timedAnswer{{0, a4(v4a)}, {ms(200), aaaa(v6a)}},
		script:  map[string]outcome{v6a: {delay: ms(10)}},
		want:    []string{"50ms tcp4 " + v4a, "300ms tcp6 " + v6a},
		winner:  v6a, elapsed: ms(310),
	},
	{
		name:    "AAAA at 20ms cuts the resolution delay short",
		answers: []timedAnswer{{0, a4(v4a)}, {ms(20), aaaa(v6a)}},
		script:  map[string]outcome{v4a: {delay: ms(1)}},
		want:    []string{"20ms tcp6 " + v6a, "270ms tcp4 " + v4a},
		winner:  v4a, elapsed: ms(271),
	},
	{
		name:    "negative AAAA cuts the resolution delay short",
		answers: []timedAnswer{{0, a4(v4a)}, {ms(20), resolver.Answer{Family: 6, Err: resolver.ErrNoData}}},
		script:  map[string]outcome{v4a: {delay: ms(5)}},
		want:    []string{"20ms tcp4 " + v4a},
		winner:  v4a, elapsed: ms(25),
	},
	{
		name:    "A alone after the channel closes",
		answers: []timedAnswer{{ms(5), a4(v4a)}},
		script:  map[string]outcome{v4a: {delay: ms(5)}},
		want:    []string{"5ms tcp4 " + v4a},
		winner:  v4a, elapsed: ms(10),
	},
	{
		name:    "a failure advances at once but not within 10ms",
		answers: []timedAnswer{{0, aaaa(v6a, v6b)}, {0, a4(v4a)}},
		script: map[string]outcome{v6a: {delay: ms(3), err: syscall.ECONNREFUSED},
			v4a: {delay: ms(90), err: syscall.EHOSTUNREACH}, v6b: {delay: ms(30)}},
		want:   []string{"0s tcp6 " + v6a, "10ms tcp4 " + v4a, "100ms tcp6 " + v6b},
		winner: v6b, elapsed: ms(130),
	},
	{
		name:    "slow first attempt is not cancelled and wins",
		answers: []timedAnswer{{0, aaaa(v6a)}, {0, a4(v4a)}},
		script:  map[string]outcome{v6a: {delay: ms(300)}},
		want:    []string{"0s tcp6 " + v6a, "250ms tcp4 " + v4a},
		winner:  v6a, elapsed: ms(300),
	},
	{
		name:    "MaxConcurrent respected, a failure frees a slot",
		answers: []timedAnswer{{0, aaaa(v6a, v6b)}, {0, a4(v4a, v4b)}},
		script:  map[string]outcome{v6a: {delay: ms(600), err: syscall.ECONNREFUSED}},
		setup:   func(d *Dialer) { d.MaxConcurrent, d.Timeout = 2, time.Second },
		want:    []string{"0s tcp6 " + v6a, "250ms tcp4 " + v4a, "600ms tcp6 " + v6b},
		elapsed: time.Second, maxInflight: 2,
		check: errIs(syscall.ECONNREFUSED), // refused is more informative than the timeout
	},
	{
		name:    "overall deadline",
		answers: []timedAnswer{{0, aaaa(v6a)}},
		setup:   func(d *Dialer) { d.Timeout = 3 * time.Second },
		want:    []string{"0s tcp6 " + v6a},
		elapsed: 3 * time.Second, check: isTimeoutErr,
	},
	{
		name:    "deadline while DNS is silent",
		closeAt: time.Hour,
		setup:   func(d *Dialer) { d.Timeout = time.Second },
		elapsed: time.Second, check: isTimeoutErr,
	},
	{
		name:    "late AAAA merged into the untried tail",
		answers: []timedAnswer{{0, a4(v4a, v4b)}, {ms(100), aaaa(v6a)}},
		setup:   func(d *Dialer) { d.Timeout = time.Second },
		want:    []string{"50ms tcp4 " + v4a, "300ms tcp6 " + v6a, "550ms tcp4 " + v4b},
		elapsed: time.Second, check: isTimeoutErr,
	},
	{
		name:    "most informative error: refused over unreachable",
		answers: []timedAnswer{{0, aaaa(v6a)}, {0, a4(v4a)}},
		script: map[string]outcome{v6a: {delay: ms(20), err: syscall.EHOSTUNREACH},
			v4a: {delay: ms(20), err: syscall.ECONNREFUSED}},
		want:    []string{"0s tcp6 " + v6a, "20ms tcp4 " + v4a},
		elapsed: ms(40), check: errIs(syscall.ECONNREFUSED),
	},
	{
		name: "NXDOMAIN",
		answers: []timedAnswer{{0, resolver.Answer{Family: 6, Err: resolver.ErrNXDomain}},
			{0, resolver.Answer{Family: 4, Err: resolver.ErrNXDomain}}},
		check: errIs(resolver.ErrNXDomain),
	},
	{
		name:  "empty answers",
		check: errIs(ErrNoAddress),
	},
	{
		name: "IPv4 literal without IPv4 route is synthesized with the WKP",
		host: "192.0.2.1", script: map[string]outcome{"64:ff9b::c000:201": {delay: ms(7)}},
		setup: func(d *Dialer) { d.HasIPv4Route = func() bool { return false } },
		want:  []string{"0s tcp6 64:ff9b::c000:201"}, winner: "64:ff9b::c000:201", elapsed: ms(7),
	},
	{
		name: "127.0.0.1 literal is native without IPv4 route",
		host: "127.0.0.1", script: map[string]outcome{"127.0.0.1": {delay: ms(1)}},
		setup: func(d *Dialer) { d.HasIPv4Route = func() bool { return false } },
		want:  []string{"0s tcp4 127.0.0.1"}, winner: "127.0.0.1", elapsed: ms(1),
	},
	{
		name: "bracketed IPv6 literal",
		host: "[" + v6a + "]", script: map[string]outcome{v6a: {delay: ms(1)}},
		want: []string{"0s tcp6 " + v6a}, winner: v6a, elapsed: ms(1),
	},
	{
		name:    "DNS64 answers de-synthesized and de-duplicated against A",
		answers: []timedAnswer{{0, aaaa("64:ff9b::c633:640a", v6a)}, {0, a4(v4a, v4b)}},
		setup:   func(d *Dialer) { d.HasIPv4Route = func() bool { return false }; d.Timeout = time.Second },
		want:    []string{"0s tcp6 " + v6a, "250ms tcp6 64:ff9b::c633:640a", "500ms tcp6 64:ff9b::c633:640b"},
		elapsed: time.Second, check: isTimeoutErr,
	},
	{
		name:    "DNS64 answer embedding loopback stays IPv6",
		answers: []timedAnswer{{0, aaaa("64:ff9b::7f00:1")}},
		script:  map[string]outcome{"64:ff9b::7f00:1": {delay: ms(3)}},
		want:    []string{"0s tcp6 64:ff9b::7f00:1"}, winner: "64:ff9b::7f00:1", elapsed: ms(3),
	},
	{
		name:    "no IPv4 route and no NAT64 prefix",
		answers: []timedAnswer{{0, a4(v4a)}},
		setup: func(d *Dialer) {
			d.HasIPv4Route = func() bool { return false }
			d.NAT64 = fakeNAT64{none: true}
		},
		check: func(t *testing.T, err error) {
			errIs(syscall.ENETUNREACH)(t, err)
			errIs(nat64.ErrNoPrefix)(t, err)
		},
	},
	{
		name:    "every candidate refused by policy",
		answers: []timedAnswer{{0, a4("169.254.1.1", "0.1.2.3", "10.1.2.3")}},
		setup: func(d *Dialer) {
			d.HasIPv4Route = func() bool { return false }
			d.NAT64 = &nat64.Prefixes{Policy: nat64.Policy{Strict: true}}
		},
		check: errIs(nat64.ErrPolicy),
	},
}

func TestRace(t *testing.T) {
	for _, tc := range raceCases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fn := newFakeNet(tc.script)
				host := tc.host
				if host == "" {
					host = "example.test"
				}
				d := &Dialer{
					Resolver:     &fakeResolver{answers: map[string][]timedAnswer{host: tc.answers}, closeAt: tc.closeAt},
					NAT64:        fakeNAT64{},
					HasIPv4Route: func() bool { return true },
					DialAttempt:  fn.dial,
				}
				if tc.setup != nil {
					tc.setup(d)
				}
				start := time.Now()
				c, err := d.DialContext(t.Context(), host, 443)
				elapsed := time.Since(start)
				synctest.Wait() // losers drained and closed
				if got := fmtStarts(fn.starts()); !slices.Equal(got, tc.want) {
					t.Errorf("attempts\n got %q\nwant %q", got, tc.want)
				}
				if elapsed != tc.elapsed {
					t.Errorf("elapsed %v, want %v", elapsed, tc.elapsed)
				}
				if tc.maxInflight > 0 && fn.maxInflight != tc.maxInflight {
					t.Errorf("max in flight %d, want %d", fn.maxInflight, tc.maxInflight)
				}
				if tc.winner == "" {
					if c != nil || err == nil {
						t.Fatalf("DialContext = %v, %v; want an error", c, err)
					}
					if tc.check != nil {
						tc.check(t, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("DialContext: %v", err)
				}
				if got := c.RemoteAddr().(*net.TCPAddr).AddrPort(); got != netip.AddrPortFrom(netip.MustParseAddr(tc.winner), 443) {
					t.Errorf("winner %s, want %s", got, tc.winner)
				}
				for _, fc := range fn.conns {
					if want := 1 - btoi(fc == c); fc.closeCount() != want {
						t.Errorf("conn %s closed %d times, want %d", fc.remote, fc.closeCount(), want)
					}
				}
			})
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestLosersClosed(t *testing.T) {
	for _, late := range []time.Duration{ms(50), ms(60), ms(400)} { // same instant as the winner, or later
		t.Run(late.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fn := newFakeNet(map[string]outcome{
					v6a: {delay: ms(300)},
					v4a: {delay: late, ignoreCancel: true}, // started at 250ms
				})
				d := &Dialer{
					Resolver:     &fakeResolver{answers: map[string][]timedAnswer{"h": {{0, aaaa(v6a)}, {0, a4(v4a)}}}},
					HasIPv4Route: func() bool { return true }, DialAttempt: fn.dial,
				}
				c, err := d.DialContext(t.Context(), "h", 80)
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Second)
				synctest.Wait()
				if len(fn.conns) != 2 {
					t.Fatalf("%d connections, want 2", len(fn.conns))
				}
				for _, fc := range fn.conns {
					if want := 1 - btoi(fc == c); fc.closeCount() != want {
						t.Errorf("conn %s closed %d times, want %d", fc.remote, fc.closeCount(), want)
					}
				}
			})
		})
	}
}

func TestHistoryReordersLaterRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fn := newFakeNet(map[string]outcome{
			v6a:                  {delay: ms(2), err: syscall.ECONNREFUSED},
			"64:ff9b::c633:640a": {delay: ms(5)},
		})
		d := &Dialer{
			Resolver: &fakeResolver{answers: map[string][]timedAnswer{"Example.Test.": {{0, aaaa(v6a)}, {0, a4(v4a)}}}},
			NAT64:    fakeNAT64{}, HasIPv4Route: func() bool { return false }, DialAttempt: fn.dial,
		}
		for range 2 {
			c, err := d.DialContext(t.Context(), "Example.Test.", 443)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			time.Sleep(time.Second)
		}
		want := []string{"0s tcp6 2001:db8::a", "10ms tcp6 64:ff9b::c633:640a", // race 1: IPv6 first
			"1.015s tcp6 64:ff9b::c633:640a"} // race 2: the winner first, and it wins at once
		if got := fmtStarts(fn.starts()); !slices.Equal(got, want) {
			t.Errorf("attempts\n got %q\nwant %q", got, want)
		}
		// After HistoryTTL the default order comes back, even though the entry's address won again.
		time.Sleep(DefaultHistoryTTL)
		if _, ok := d.winner("example.test", time.Now()); ok {
			t.Error("history entry outlived HistoryTTL")
		}
	})
}

func TestNoResolver(t *testing.T) {
	var d Dialer
	if _, err := d.DialContext(t.Context(), "example.test", 80); !errors.Is(err, ErrNoResolver) {
		t.Fatalf("err = %v", err)
	}
}

func TestCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fn := newFakeNet(nil)
		d := &Dialer{Resolver: &fakeResolver{answers: map[string][]timedAnswer{"h": {{0, aaaa(v6a)}}}},
			DialAttempt: fn.dial, HasIPv4Route: func() bool { return true }}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(ms(100), cancel)
		_, err := d.DialContext(ctx, "h", 80)
		if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "deadline") {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}
