package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nat464/nat464-sidecar/resolver/dnstest"
)

var k8sSearch = []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}

func TestSearchOrderOnTheWire(t *testing.T) {
	leakCheck(t)
	tests := []struct {
		host  string
		ndots int
		want  []string
	}{
		{"redis", 5, []string{
			"redis.default.svc.cluster.local.", "redis.svc.cluster.local.", "redis.cluster.local.", "redis."}},
		{"redis.cache", 5, []string{
			"redis.cache.default.svc.cluster.local.", "redis.cache.svc.cluster.local.",
			"redis.cache.cluster.local.", "redis.cache."}},
		{"api.example.com", 5, []string{
			"api.example.com.default.svc.cluster.local.", "api.example.com.svc.cluster.local.",
			"api.example.com.cluster.local.", "api.example.com."}},
		{"api.example.com", 2, []string{
			"api.example.com.", "api.example.com.default.svc.cluster.local.",
			"api.example.com.svc.cluster.local.", "api.example.com.cluster.local."}},
		{"fqdn.", 5, []string{"fqdn."}},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Search, c.Ndots = k8sSearch, tc.ndots })
			v6, v4 := lookup(t, e.res, tc.host)
			if !errors.Is(v6.Err, ErrNXDomain) || !errors.Is(v4.Err, ErrNXDomain) {
				t.Fatalf("want NXDOMAIN for both, got %v / %v", v6.Err, v4.Err)
			}
			var got6, got4 []string
			for _, q := range e.srv.Queries() {
				switch q.Type {
				case dns.TypeAAAA:
					got6 = append(got6, q.Name)
				case dns.TypeA:
					got4 = append(got4, q.Name)
				}
			}
			if !reflect.DeepEqual(got6, tc.want) || !reflect.DeepEqual(got4, tc.want) {
				t.Errorf("AAAA names %v\nA names    %v\nwant       %v", got6, got4, tc.want)
			}
		})
	}
}

func TestFirstCandidateWithAnAddressWins(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *Config) { c.Search, c.Ndots = k8sSearch, 5 })
	e.srv.AddA("redis.svc.cluster.local", time.Minute, "192.0.2.10") // no AAAA: NODATA
	e.srv.AddAAAA("redis.cluster.local", time.Minute, "2001:db8::10")
	v6, v4 := lookup(t, e.res, "redis")
	if v4.Name != "redis.svc.cluster.local." || !slices.Equal(v4.Addrs, addrs("192.0.2.10")) {
		t.Errorf("A answer: %+v", v4)
	}
	if v6.Name != "redis.svc.cluster.local." || !errors.Is(v6.Err, ErrNoData) {
		t.Errorf("AAAA answer: %+v", v6)
	}
	if n := e.srv.Count("redis.cluster.local", 0, ""); n != 0 {
		t.Errorf("later candidate queried %d times after a win", n)
	}
}

func TestHostsFileFirst(t *testing.T) {
	leakCheck(t)
	hosts := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(hosts, []byte("192.0.2.7 myhost\n2001:db8::7 myhost\n192.0.2.8 v4only.default.svc.cluster.local\n"), 0o644)
	e := newEnv(t, func(c *Config) { c.HostsFile, c.Search, c.Ndots = hosts, k8sSearch, 5 })
	e.srv.AddAAAA("myhost", time.Minute, "2001:db8::99")

	v6, v4 := lookup(t, e.res, "myhost")
	if !slices.Equal(v6.Addrs, addrs("2001:db8::7")) || !slices.Equal(v4.Addrs, addrs("192.0.2.7")) {
		t.Errorf("myhost: %+v %+v", v6, v4)
	}
	v6, v4 = lookup(t, e.res, "v4only")
	if !errors.Is(v6.Err, ErrNoData) || !slices.Equal(v4.Addrs, addrs("192.0.2.8")) ||
		v4.Name != "v4only.default.svc.cluster.local." {
		t.Errorf("v4only (search-expanded): %+v %+v", v6, v4)
	}
	if n := e.srv.Count("", 0, ""); n != 0 {
		t.Errorf("hosts hits sent %d queries", n)
	}
}

func TestTruncatedRetriesOverTCP(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.srv.AddAAAA("big.example", time.Minute, "2001:db8::1", "2001:db8::2")
	e.srv.AddA("big.example", time.Minute, "192.0.2.1")
	e.srv.Set("big.example", 0, dnstest.Behavior{Truncate: true})
	v6, v4 := lookup(t, e.res, "big.example.")
	if !slices.Equal(v6.Addrs, addrs("2001:db8::1", "2001:db8::2")) || !slices.Equal(v4.Addrs, addrs("192.0.2.1")) {
		t.Errorf("answers %+v %+v", v6, v4)
	}
	for _, tr := range []string{"udp", "tcp"} {
		if n := e.srv.Count("big.example", dns.TypeAAAA, tr); n != 1 {
			t.Errorf("%d AAAA queries over %s, want 1", n, tr)
		}
	}
}

func TestAnswersStreamAsTheyArrive(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.srv.AddAAAA("slow6.example", time.Minute, "2001:db8::6")
	e.srv.AddA("slow6.example", time.Minute, "192.0.2.4")
	e.srv.Set("slow6.example", dns.TypeAAAA, dnstest.Behavior{Delay: 200 * time.Millisecond})
	as := collect(t, e.res.Lookup(context.Background(), "slow6.example."))
	if as[0].Family != 4 || as[1].Family != 6 {
		t.Fatalf("order %d then %d, want the A answer first", as[0].Family, as[1].Family)
	}
	if !slices.Equal(as[1].Addrs, addrs("2001:db8::6")) {
		t.Errorf("late AAAA answer %+v", as[1])
	}
}

func TestDroppedServerTimesOut(t *testing.T) {
	leakCheck(t)
	const timeout, attempts = 100 * time.Millisecond, 2
	e := newEnv(t, func(c *Config) { c.Timeout, c.Attempts = timeout, attempts })
	e.srv.Set("dropped.example", 0, dnstest.Behavior{Drop: true})
	start := time.Now()
	v6, v4 := lookup(t, e.res, "dropped.example.")
	elapsed := time.Since(start)
	if !errors.Is(v6.Err, ErrTimeout) || !errors.Is(v4.Err, ErrTimeout) {
		t.Errorf("errors %v / %v, want ErrTimeout", v6.Err, v4.Err)
	}
	if limit := timeout*attempts + 2*time.Second; elapsed > limit {
		t.Errorf("took %v, want at most timeout*attempts plus slack (%v)", elapsed, limit)
	}
	if n := e.srv.Count("dropped.example", dns.TypeAAAA, "udp"); n != attempts {
		t.Errorf("%d AAAA tries, want %d", n, attempts)
	}
}

func TestErrorClassification(t *testing.T) {
	leakCheck(t)
	tests := []struct {
		name string
		b    dnstest.Behavior
		want error
	}{
		{"servfail", dnstest.Behavior{Rcode: dns.RcodeServerFailure}, ErrServFail},
		{"refused", dnstest.Behavior{Rcode: dns.RcodeRefused}, ErrRefused},
		{"nxdomain", dnstest.Behavior{Rcode: dns.RcodeNameError}, ErrNXDomain},
		{"nodata", dnstest.Behavior{NoData: true}, ErrNoData},
		{"notimp", dnstest.Behavior{Rcode: dns.RcodeNotImplemented}, ErrBadResponse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.srv.AddAAAA("x.example", time.Minute, "2001:db8::1")
			e.srv.AddA("x.example", time.Minute, "192.0.2.1")
			e.srv.Set("x.example", 0, tc.b)
			v6, v4 := lookup(t, e.res, "x.example.")
			if !errors.Is(v6.Err, tc.want) || !errors.Is(v4.Err, tc.want) {
				t.Errorf("Lookup errors %v / %v, want %v", v6.Err, v4.Err, tc.want)
			}
			if _, _, err := e.res.LookupAAAA(context.Background(), "x.example"); !errors.Is(err, tc.want) {
				t.Errorf("LookupAAAA error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestFailoverToNextServer(t *testing.T) {
	leakCheck(t)
	for _, b := range []dnstest.Behavior{
		{Rcode: dns.RcodeServerFailure},
		{Rcode: dns.RcodeRefused},
		{Drop: true},
	} {
		bad, good := dnstest.Start(t), dnstest.Start(t)
		bad.Set("x.example", 0, b)
		good.AddAAAA("x.example", time.Minute, "2001:db8::1")
		e := newEnv(t, func(c *Config) {
			c.Servers, c.Timeout = []netip.AddrPort{bad.Addr(), good.Addr()}, 100*time.Millisecond
		})
		if v6, _ := lookup(t, e.res, "x.example."); !slices.Equal(v6.Addrs, addrs("2001:db8::1")) {
			t.Errorf("%+v on the first server: AAAA %+v", b, v6)
		}
		if n := bad.Count("x.example", dns.TypeAAAA, ""); n != 1 {
			t.Errorf("%+v: first server asked %d times", b, n)
		}
	}
}

func TestCNAMEChains(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.srv.AddCNAME("www.example", 20*time.Second, "edge.example")
	e.srv.AddCNAME("edge.example", time.Minute, "host.cdn.example")
	e.srv.AddAAAA("host.cdn.example", time.Minute, "2001:db8::80")
	e.srv.AddA("host.cdn.example", time.Minute, "192.0.2.80")
	v6, v4 := lookup(t, e.res, "www.example.")
	if !slices.Equal(v6.Addrs, addrs("2001:db8::80")) || !slices.Equal(v4.Addrs, addrs("192.0.2.80")) {
		t.Fatalf("chain answers %+v %+v", v6, v4)
	}
	if v6.Name != "www.example." || v6.TTL != 20*time.Second {
		t.Errorf("name %q TTL %v, want the candidate and the chain's minimum TTL 20s", v6.Name, v6.TTL)
	}
	if n := e.srv.Count("host.cdn.example", 0, ""); n != 0 {
		t.Errorf("target re-queried %d times though the server chased the chain", n)
	}

	e.srv.Set("alias.example", 0, dnstest.Behavior{NoChase: true})
	e.srv.AddCNAME("alias.example", time.Minute, "host.cdn.example")
	v6, _ = lookup(t, e.res, "alias.example.")
	if !slices.Equal(v6.Addrs, addrs("2001:db8::80")) {
		t.Errorf("unchased chain: %+v", v6)
	}
	if n := e.srv.Count("host.cdn.example", dns.TypeAAAA, ""); n != 1 {
		t.Errorf("target queried %d times, want 1 re-query", n)
	}

	e.srv.AddCNAME("loop1.example", time.Minute, "loop2.example")
	e.srv.AddCNAME("loop2.example", time.Minute, "loop1.example")
	if v6, _ := lookup(t, e.res, "loop1.example."); v6.Err == nil {
		t.Errorf("CNAME loop answered %+v", v6)
	}
}

func TestIPv6Nameserver(t *testing.T) {
	leakCheck(t)
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		failInCI(t, "no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	srv := dnstest.StartAt(t, "::1")
	srv.AddAAAA("six.example", time.Minute, "2001:db8::6")
	e := newEnv(t, func(c *Config) { c.Servers = []netip.AddrPort{srv.Addr()} })
	if v6, _ := lookup(t, e.res, "six.example."); !slices.Equal(v6.Addrs, addrs("2001:db8::6")) {
		t.Errorf("AAAA via [::1]: %+v", v6)
	}
	if !srv.Addr().Addr().Is6() || srv.Count("six.example", 0, "") != 2 {
		t.Errorf("server %v saw %d queries", srv.Addr(), srv.Count("six.example", 0, ""))
	}
}

func TestIPLiterals(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	for _, tc := range []struct {
		host   string
		family int
		want   string
	}{
		{"192.0.2.1", 4, "192.0.2.1"},
		{"2001:db8::1", 6, "2001:db8::1"},
		{"[2001:db8::2]", 6, "2001:db8::2"},
		{"::ffff:192.0.2.3", 4, "192.0.2.3"},
	} {
		as := collect(t, e.res.Lookup(context.Background(), tc.host))
		hit, miss := byFamily(as, tc.family), byFamily(as, 10-tc.family)
		if !slices.Equal(hit.Addrs, addrs(tc.want)) || !errors.Is(miss.Err, ErrNoData) || as[0].Family != tc.family {
			t.Errorf("%s: %+v", tc.host, as)
		}
	}
	if n := e.srv.Count("", 0, ""); n != 0 {
		t.Errorf("literals sent %d queries", n)
	}
}

func TestLookupAAAA(t *testing.T) {
	leakCheck(t)
	hosts := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(hosts, []byte("2001:db8::dead ipv4only.arpa\n"), 0o644)
	e := newEnv(t, func(c *Config) { c.HostsFile, c.Search, c.Ndots = hosts, k8sSearch, 5 })
	e.srv.AddAAAA("ipv4only.arpa", 600*time.Second, "64:ff9b::c000:aa", "64:ff9b::c000:ab")
	got, ttl, err := e.res.LookupAAAA(context.Background(), "ipv4only.arpa")
	if err != nil || ttl != 600*time.Second || !slices.Equal(got, addrs("64:ff9b::c000:aa", "64:ff9b::c000:ab")) {
		t.Errorf("LookupAAAA = %v %v %v", got, ttl, err)
	}
	if qs := e.srv.Queries(); len(qs) != 1 || qs[0] != (dnstest.Query{Name: "ipv4only.arpa.", Type: dns.TypeAAAA, Transport: "udp"}) {
		t.Errorf("queries %+v, want one AAAA for ipv4only.arpa.", qs)
	}
	e.srv.SetNegativeTTL(45 * time.Second)
	_, ttl, err = e.res.LookupAAAA(context.Background(), "nope.arpa.")
	if !errors.Is(err, ErrNXDomain) || ttl != 45*time.Second {
		t.Errorf("negative: ttl %v err %v", ttl, err)
	}
	if _, _, err := e.res.LookupAAAA(context.Background(), ""); !errors.Is(err, ErrBadName) {
		t.Errorf("empty name: %v", err)
	}
}

func TestClose(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	hold := make(chan struct{})
	defer close(hold)
	e.srv.Set("stuck.example", 0, dnstest.Behavior{Hold: hold})
	ch := e.res.Lookup(context.Background(), "stuck.example.")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.WaitFor(ctx, "stuck.example", 0, 2); err != nil {
		t.Fatal(err)
	}
	e.res.Close()
	for _, a := range collect(t, ch) {
		if !errors.Is(a.Err, ErrClosed) {
			t.Errorf("pending lookup after Close: %+v", a)
		}
	}
	v6, _ := lookup(t, e.res, "other.example.")
	if !errors.Is(v6.Err, ErrClosed) {
		t.Errorf("lookup after Close: %+v", v6)
	}
	if _, _, err := e.res.LookupAAAA(context.Background(), "other.example"); !errors.Is(err, ErrClosed) {
		t.Errorf("LookupAAAA after Close: %v", err)
	}
	e.res.Close() // idempotent
}

func TestFilesReread(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	rcPath, hostsPath := filepath.Join(dir, "resolv.conf"), filepath.Join(dir, "hosts")
	srv := dnstest.Start(t)
	srv.AddAAAA("app.one.example", time.Minute, "2001:db8::1")
	srv.AddAAAA("app.two.example", time.Minute, "2001:db8::2")
	write := func(path, text string, mtime time.Time) {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(path, mtime, mtime)
	}
	t0 := time.Now().Add(-time.Hour)
	write(rcPath, "nameserver "+srv.Addr().String()+"\nsearch one.example\n", t0)
	write(hostsPath, "192.0.2.1 pinned\n", t0)
	clk := newClock()
	r, err := New(Config{ResolvConf: rcPath, HostsFile: hostsPath, Now: clk.Now, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if v6, _ := lookup(t, r, "app"); v6.Name != "app.one.example." {
		t.Fatalf("before change: %+v", v6)
	}

	write(rcPath, "nameserver "+srv.Addr().String()+"\nsearch two.example\noptions rotate\n", t0.Add(time.Minute))
	write(hostsPath, "192.0.2.2 pinned\n", t0.Add(time.Minute))
	if v6, _ := lookup(t, r, "app"); v6.Name != "app.one.example." {
		t.Errorf("re-read within a second of the last check: %+v", v6)
	}
	clk.Advance(statInterval)
	if v6, _ := lookup(t, r, "app"); v6.Name != "app.two.example." {
		t.Errorf("after change: %+v", v6)
	}
	if _, v4 := lookup(t, r, "pinned"); !slices.Equal(v4.Addrs, addrs("192.0.2.2")) {
		t.Errorf("hosts after change: %+v", v4)
	}
	if !r.ResolvConf().Rotate {
		t.Errorf("options rotate not picked up: %+v", r.ResolvConf())
	}

	os.Remove(rcPath)
	clk.Advance(statInterval)
	if rc := r.ResolvConf(); !rc.Missing || !slices.Equal(rc.Servers, localServers()) {
		t.Errorf("after removal: %+v", rc)
	}
}

func TestRotate(t *testing.T) {
	leakCheck(t)
	a, b := dnstest.Start(t), dnstest.Start(t)
	for _, s := range []*dnstest.Server{a, b} {
		s.AddAAAA("r.example", time.Minute, "2001:db8::1")
	}
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	os.WriteFile(rc, []byte("nameserver "+a.Addr().String()+"\nnameserver "+b.Addr().String()+"\noptions rotate\n"), 0o644)
	clk := newClock()
	r, err := New(Config{ResolvConf: rc, HostsFile: "-", Now: clk.Now, MinTTL: time.Second, MaxTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	for range 4 {
		if _, _, err := r.LookupAAAA(context.Background(), "r.example"); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Second)
	}
	if na, nb := a.Count("", 0, ""), b.Count("", 0, ""); na != 2 || nb != 2 {
		t.Errorf("rotate spread %d/%d, want 2/2", na, nb)
	}
}

// TestHostsSkip: hosts-file addresses in a skipped range are not there for the resolver: a name
// left with none is asked of DNS (transparent egress dials a static egress name this way).
func TestHostsSkip(t *testing.T) {
	leakCheck(t)
	hosts := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(hosts, []byte("127.100.0.5 db.example\n127.100.0.6 both.example\n2001:db8::6 both.example\n"), 0o644)
	e := newEnv(t, func(c *Config) {
		c.HostsFile, c.Search, c.Ndots = hosts, nil, 1
		c.HostsSkip = []netip.Prefix{netip.MustParsePrefix("127.100.0.0/16")}
	})
	e.srv.AddAAAA("db.example", time.Minute, "2001:db8::5")
	v6, v4 := lookup(t, e.res, "db.example")
	if !slices.Equal(v6.Addrs, addrs("2001:db8::5")) || len(v4.Addrs) != 0 {
		t.Errorf("db.example: %+v %+v, want its DNS AAAA and no egress address", v6, v4)
	}
	v6, v4 = lookup(t, e.res, "both.example")
	if !slices.Equal(v6.Addrs, addrs("2001:db8::6")) || len(v4.Addrs) != 0 || e.srv.Count("both.example", 0, "") != 0 {
		t.Errorf("both.example: %+v %+v; its other hosts-file address stays", v6, v4)
	}
	a4, _, err := e.res.LookupA(context.Background(), "db.example")
	if !errors.Is(err, ErrNXDomain) && !errors.Is(err, ErrNoData) || len(a4) != 0 {
		t.Errorf("LookupA(db.example) = %v %v, want no A record (LookupA never reads the hosts file)", a4, err)
	}
}
