package resolver

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/resolver/dnstest"
	"go.uber.org/goleak"
)

// clock is a controllable Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// leakCheck registers, as the test's first cleanup (so it runs last), checks that no
// goroutine and no file descriptor outlives the test.
func leakCheck(t *testing.T) {
	t.Helper()
	before := fdCount(t)
	t.Cleanup(func() {
		goleak.VerifyNone(t)
		if after := fdCount(t); after > before {
			t.Errorf("file descriptors leaked: %d before, %d after", before, after)
		}
	})
}

func fdCount(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0 // no procfs: the goroutine check still runs
	}
	return len(ents)
}

// testEnv is a dnstest server with a resolver pointed at it through Config overrides.
type testEnv struct {
	srv   *dnstest.Server
	clock *clock
	res   *Resolver
	cfg   Config
}

// newEnv starts a server and a resolver (timeout 500ms, 1 attempt, no search list, no
// files); edit adjusts the Config first.
func newEnv(t testing.TB, edit func(*Config)) *testEnv {
	t.Helper()
	e := &testEnv{srv: dnstest.Start(t), clock: newClock()}
	dir := t.TempDir()
	e.cfg = Config{
		ResolvConf: filepath.Join(dir, "resolv.conf"),
		HostsFile:  "-",
		Servers:    []netip.AddrPort{e.srv.Addr()},
		Search:     []string{},
		Timeout:    500 * time.Millisecond,
		Attempts:   1,
		Now:        e.clock.Now,
	}
	if edit != nil {
		edit(&e.cfg)
	}
	res, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	e.res = res
	return e
}

// collect reads every Answer of a lookup, in arrival order.
func collect(t testing.TB, ch <-chan Answer) []Answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []Answer
	for {
		select {
		case a, ok := <-ch:
			if !ok {
				if len(out) != 2 || out[0].Family == out[1].Family {
					t.Fatalf("want one Answer per family, got %+v", out)
				}
				return out
			}
			out = append(out, a)
		case <-ctx.Done():
			t.Fatalf("lookup did not finish; got %+v so far", out)
		}
	}
}

func byFamily(as []Answer, family int) Answer {
	i := slices.IndexFunc(as, func(a Answer) bool { return a.Family == family })
	return as[i]
}

func lookup(t testing.TB, r *Resolver, host string) (v6, v4 Answer) {
	t.Helper()
	as := collect(t, r.Lookup(context.Background(), host))
	return byFamily(as, 6), byFamily(as, 4)
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// failInCI turns a skip for a missing capability into a failure when CI=true.
func failInCI(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but this test cannot run here: "+format, args...)
	}
	t.Skipf(format, args...)
}
