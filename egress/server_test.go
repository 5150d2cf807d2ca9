package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nat464/nat464-sidecar/resolver"
	"github.com/nat464/nat464-sidecar/resolver/dnstest"
)

// lab is a DNS server in egress mode in front of a dnstest upstream, through a real resolver.
type lab struct {
	up      *dnstest.Server
	table   *Table
	srv     *Server
	addr    netip.AddrPort
	reach4  bool
	metrics *Metrics

	mu    sync.Mutex
	bound map[netip.Addr]string
}

func newLab(t *testing.T, tcfg TableConfig, mod func(*ServerConfig)) *lab {
	t.Helper()
	l := &lab{up: dnstest.Start(t), reach4: true, bound: map[netip.Addr]string{}}
	l.up.AddA("v4only.example", 600*time.Second, "192.0.2.1")
	l.up.AddAAAA("v6only.example", 120*time.Second, "2001:db8::6")
	l.up.AddA("dual.example", 30*time.Second, "192.0.2.2")
	l.up.AddAAAA("dual.example", 30*time.Second, "2001:db8::2")
	l.up.AddRR("textonly.example. 300 IN TXT \"no addresses here\"")
	res, err := resolver.New(resolver.Config{ResolvConf: filepath.Join(t.TempDir(), "none"), HostsFile: "-",
		Servers: []netip.AddrPort{l.up.Addr()}, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	if !tcfg.Range.IsValid() {
		tcfg.Range = DefaultRange
	}
	l.table = mustTable(t, tcfg)
	l.metrics = NewMetrics(prometheus.NewRegistry(), l.table.Len)
	cfg := ServerConfig{Table: l.table, Resolver: res, Upstreams: []netip.AddrPort{l.up.Addr()},
		Reach4: func() bool { return l.reach4 }, Metrics: l.metrics,
		Bind: func(a netip.Addr, name string) {
			l.mu.Lock()
			defer l.mu.Unlock()
			if old, ok := l.bound[a]; ok {
				t.Errorf("Bind(%s, %s) again (first for %s)", a, name, old)
			}
			l.bound[a] = name
		}}
	if mod != nil {
		mod(&cfg)
	}
	l.srv, err = NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.addr, err = l.srv.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.srv.Shutdown(context.Background()) })
	return l
}

func (l *lab) ask(t *testing.T, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, l.addr.String())
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	if r.Id != m.Id {
		t.Fatalf("reply id %d, want %d", r.Id, m.Id)
	}
	return r
}

func onlyA(t *testing.T, r *dns.Msg) (netip.Addr, uint32) {
	t.Helper()
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("want one A record, got %s %v", dns.RcodeToString[r.Rcode], r.Answer)
	}
	a, ok := r.Answer[0].(*dns.A)
	if !ok {
		t.Fatalf("answer %v is not A", r.Answer[0])
	}
	addr, _ := netip.AddrFromSlice(a.A)
	return addr.Unmap(), a.Hdr.Ttl
}

func hasSOA(r *dns.Msg) bool {
	for _, rr := range r.Ns {
		if _, ok := rr.(*dns.SOA); ok {
			return true
		}
	}
	return false
}

func TestAnswerA(t *testing.T) {
	l := newLab(t, TableConfig{MaxNames: 100}, nil)
	v4, ttl := onlyA(t, l.ask(t, "udp", "v4only.example", dns.TypeA))
	if !DefaultRange.Contains(v4) || ttl > 300 || ttl < 1 {
		t.Errorf("v4only: %s ttl %d, want an address in %s with TTL capped at 300", v4, ttl, DefaultRange)
	}
	v6, ttl6 := onlyA(t, l.ask(t, "udp", "V6ONLY.example", dns.TypeA))
	if v6 == v4 || !DefaultRange.Contains(v6) || ttl6 > 120 {
		t.Errorf("v6only: %s ttl %d (v4only has %s); want its own address, TTL at most the AAAA's 120", v6, ttl6, v4)
	}
	dual, ttlD := onlyA(t, l.ask(t, "tcp", "dual.example", dns.TypeA))
	if ttlD > 30 {
		t.Errorf("dual TTL %d, want at most the upstream's 30", ttlD)
	}
	again, _ := onlyA(t, l.ask(t, "udp", "v4only.example.", dns.TypeA))
	if again != v4 {
		t.Errorf("v4only again: %s, want %s", again, v4)
	}
	l.mu.Lock()
	if len(l.bound) != 3 || l.bound[v4] != "v4only.example." || l.bound[v6] != "v6only.example." || l.bound[dual] != "dual.example." {
		t.Errorf("listeners bound for %v", l.bound)
	}
	l.mu.Unlock()
	if got := testutil.ToFloat64(l.metrics.queries.WithLabelValues("A", AnswerEgress)); got != 4 {
		t.Errorf("dns_queries_total{A,egress} = %v, want 4", got)
	}

	// Without a NAT64 prefix, an IPv4-only name has no usable address: NODATA, no address given.
	l.reach4 = false
	l.up.AddA("v4only-too.example", time.Minute, "192.0.2.9")
	r := l.ask(t, "udp", "v4only-too.example", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("IPv4-only without NAT64: %s %v, want NODATA", dns.RcodeToString[r.Rcode], r.Answer)
	}
	if _, ok := l.table.Lookup("v4only-too.example"); ok {
		t.Error("an unreachable name was given an address")
	}
}

// TestAnswerNegative: NXDOMAIN and NODATA come from the upstream with its SOA, and a repeated
// question is answered from the negative cache.
func TestAnswerNegative(t *testing.T) {
	l := newLab(t, TableConfig{}, nil)
	r := l.ask(t, "udp", "nowhere.example", dns.TypeA)
	if r.Rcode != dns.RcodeNameError || !hasSOA(r) {
		t.Fatalf("missing name: %s, SOA %v; want NXDOMAIN with SOA", dns.RcodeToString[r.Rcode], hasSOA(r))
	}
	asked := len(l.up.Queries())
	r = l.ask(t, "udp", "nowhere.example", dns.TypeA)
	if r.Rcode != dns.RcodeNameError || !hasSOA(r) || len(l.up.Queries()) != asked {
		t.Errorf("missing name again: %s; upstream asked %d more times, want 0", dns.RcodeToString[r.Rcode], len(l.up.Queries())-asked)
	}
	r = l.ask(t, "udp", "textonly.example", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || !hasSOA(r) {
		t.Errorf("name without addresses: %s %v SOA %v; want NODATA with SOA", dns.RcodeToString[r.Rcode], r.Answer, hasSOA(r))
	}
	if l.table.Len() != 0 {
		t.Errorf("negative answers gave out %d addresses", l.table.Len())
	}
	l.up.Set("broken.example", 0, dnstest.Behavior{Rcode: dns.RcodeServerFailure})
	if r := l.ask(t, "udp", "broken.example", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("upstream SERVFAIL: %s", dns.RcodeToString[r.Rcode])
	}
}

// TestForwarded: other types come from the upstream unchanged; a large answer is truncated over
// UDP and whole over TCP.
func TestForwarded(t *testing.T) {
	l := newLab(t, TableConfig{}, nil)
	r := l.ask(t, "udp", "dual.example", dns.TypeAAAA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "2001:db8::2" {
		t.Errorf("AAAA: %v, want the upstream's 2001:db8::2", r.Answer)
	}
	if r := l.ask(t, "udp", "textonly.example", dns.TypeTXT); len(r.Answer) != 1 {
		t.Errorf("TXT: %v", r.Answer)
	}
	l.up.Set("textonly.example", dns.TypeTXT, dnstest.Behavior{Truncate: true})
	if r := l.ask(t, "udp", "textonly.example", dns.TypeTXT); !r.Truncated {
		t.Errorf("a truncated upstream answer over UDP: TC=%v", r.Truncated)
	}
	if r := l.ask(t, "tcp", "textonly.example", dns.TypeTXT); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("the same over TCP: TC=%v %v", r.Truncated, r.Answer)
	}
	if n := l.up.Count("textonly.example", dns.TypeTXT, "tcp"); n != 1 {
		t.Errorf("upstream TCP questions %d, want 1", n)
	}
}

func TestAnswerPTR(t *testing.T) {
	l := newLab(t, TableConfig{}, nil)
	a, _ := onlyA(t, l.ask(t, "udp", "v6only.example", dns.TypeA))
	rev, _ := dns.ReverseAddr(a.String())
	r := l.ask(t, "udp", rev, dns.TypePTR)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.PTR).Ptr != "v6only.example." {
		t.Errorf("PTR %s: %v", rev, r.Answer)
	}
	rev, _ = dns.ReverseAddr("127.100.77.77")
	if r := l.ask(t, "udp", rev, dns.TypePTR); r.Rcode != dns.RcodeNameError {
		t.Errorf("PTR of an egress address no name holds: %s", dns.RcodeToString[r.Rcode])
	}
	rev, _ = dns.ReverseAddr("192.0.2.1")
	l.ask(t, "udp", rev, dns.TypePTR)
	if n := l.up.Count(rev, dns.TypePTR, "udp"); n != 1 {
		t.Errorf("PTR outside the range was asked upstream %d times, want 1", n)
	}
	if err := l.srv.Ready(context.Background()); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

// TestHintsScrubbed: no real IPv4 address leaves the server: SVCB/HTTPS ipv4hint becomes the
// name's egress address or goes, A records in the additional section likewise.
func TestHintsScrubbed(t *testing.T) {
	l := newLab(t, TableConfig{}, nil)
	l.up.AddRR("dual.example. 300 IN HTTPS 1 . alpn=h2 ipv4hint=192.0.2.2 ipv6hint=2001:db8::2",
		"other.example. 300 IN HTTPS 1 . alpn=h2 ipv4hint=192.0.2.3")
	hint := func(name string) []string {
		r := l.ask(t, "udp", name, dns.TypeHTTPS)
		if len(r.Answer) != 1 {
			t.Fatalf("HTTPS %s: %v", name, r.Answer)
		}
		var out []string
		for _, kv := range r.Answer[0].(*dns.HTTPS).Value {
			if h, ok := kv.(*dns.SVCBIPv4Hint); ok {
				for _, ip := range h.Hint {
					out = append(out, ip.String())
				}
			}
			if _, ok := kv.(*dns.SVCBIPv6Hint); !ok && kv.Key() == dns.SVCB_IPV6HINT {
				t.Errorf("ipv6hint changed type")
			}
		}
		return out
	}
	if h := hint("other.example"); len(h) != 0 {
		t.Errorf("ipv4hint of a name without an egress address: %v, want removed", h)
	}
	a, _ := onlyA(t, l.ask(t, "udp", "dual.example", dns.TypeA))
	if h := hint("dual.example"); len(h) != 1 || h[0] != a.String() {
		t.Errorf("ipv4hint of dual.example: %v, want [%s]", h, a)
	}
}

// TestAdditionalScrubbed uses a fake upstream: an SRV answer's glue A records are rewritten.
func TestAdditionalScrubbed(t *testing.T) {
	srv := func(ctx context.Context, m *dns.Msg, network string, server netip.AddrPort) (*dns.Msg, error) {
		r := new(dns.Msg)
		r.SetReply(m)
		rr, _ := dns.NewRR("_x._tcp.example. 60 IN SRV 0 0 80 known.example.")
		g1, _ := dns.NewRR("known.example. 60 IN A 192.0.2.10")
		g2, _ := dns.NewRR("unknown.example. 60 IN A 192.0.2.11")
		g3, _ := dns.NewRR("known.example. 60 IN AAAA 2001:db8::10")
		r.Answer, r.Extra = []dns.RR{rr}, []dns.RR{g1, g2, g3}
		return r, nil
	}
	l := newLab(t, TableConfig{}, func(c *ServerConfig) { c.Exchange = srv })
	known, _, err := l.table.Assign("known.example")
	if err != nil {
		t.Fatal(err)
	}
	r := l.ask(t, "udp", "_x._tcp.example", dns.TypeSRV)
	if len(r.Answer) != 1 || len(r.Extra) != 2 {
		t.Fatalf("SRV answer %v extra %v", r.Answer, r.Extra)
	}
	if a, ok := r.Extra[0].(*dns.A); !ok || a.A.String() != known.String() {
		t.Errorf("glue A %v, want %s", r.Extra[0], known)
	}
	if _, ok := r.Extra[1].(*dns.AAAA); !ok {
		t.Errorf("AAAA glue %v dropped or changed", r.Extra[1])
	}
}

func TestMalformedQuestions(t *testing.T) {
	l := newLab(t, TableConfig{}, nil)
	ctx := context.Background()
	two := new(dns.Msg)
	two.SetQuestion("a.example.", dns.TypeA)
	two.Question = append(two.Question, dns.Question{Name: "b.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	if r := l.srv.Answer(ctx, two, "udp"); r == nil || r.Rcode != dns.RcodeFormatError || r.Id != two.Id {
		t.Errorf("two questions: %v", r)
	}
	none := &dns.Msg{MsgHdr: dns.MsgHdr{Id: 7}}
	if r := l.srv.Answer(ctx, none, "udp"); r == nil || r.Rcode != dns.RcodeFormatError {
		t.Errorf("no question: %v", r)
	}
	upd := new(dns.Msg)
	upd.SetUpdate("example.")
	if r := l.srv.Answer(ctx, upd, "udp"); r == nil || r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("UPDATE: %v", r)
	}
	resp := new(dns.Msg)
	resp.SetQuestion("a.example.", dns.TypeA)
	resp.Response = true
	if r := l.srv.Answer(ctx, resp, "udp"); r != nil {
		t.Errorf("a response got an answer: %v", r)
	}
	chaos := new(dns.Msg)
	chaos.SetQuestion("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	_ = l.srv.Answer(ctx, chaos, "udp")
	if n := l.up.Count("version.bind.", dns.TypeTXT, "udp"); n != 1 {
		t.Errorf("CHAOS class question forwarded %d times, want 1", n)
	}
}

// TestExhaustedServFail: with every address given out, a new name gets SERVFAIL and the old
// names keep theirs.
func TestExhaustedServFail(t *testing.T) {
	l := newLab(t, TableConfig{Range: netip.MustParsePrefix("127.0.1.0/30")}, nil)
	a, _ := onlyA(t, l.ask(t, "udp", "v4only.example", dns.TypeA))
	onlyA(t, l.ask(t, "udp", "v6only.example", dns.TypeA))
	if r := l.ask(t, "udp", "dual.example", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("third name in a /30: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if again, _ := onlyA(t, l.ask(t, "udp", "v4only.example", dns.TypeA)); again != a {
		t.Errorf("an old name after exhaustion: %s, want %s", again, a)
	}
}

// TestOverload: past MaxInFlight questions in progress, a question gets SERVFAIL at once.
func TestOverload(t *testing.T) {
	hold := make(chan struct{})
	l := newLab(t, TableConfig{}, func(c *ServerConfig) { c.MaxInFlight = 2 })
	l.up.Set("slow.example", 0, dnstest.Behavior{Hold: hold})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := new(dns.Msg)
			m.SetQuestion("slow.example.", dns.TypeTXT)
			_ = l.srv.Answer(context.Background(), m, "udp")
		}()
	}
	if err := l.up.WaitFor(context.Background(), "slow.example", dns.TypeTXT, 2); err != nil {
		t.Fatal(err)
	}
	if r := l.ask(t, "udp", "v4only.example", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("over MaxInFlight: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if got := testutil.ToFloat64(l.metrics.queries.WithLabelValues("A", AnswerOverload)); got != 1 {
		t.Errorf("overload counted %v times", got)
	}
	close(hold)
	wg.Wait()
	onlyA(t, l.ask(t, "udp", "v4only.example", dns.TypeA))
}

func TestShutdownReady(t *testing.T) {
	l := newLab(t, TableConfig{}, nil)
	if err := l.srv.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := l.srv.Ready(ctx); err == nil || !strings.Contains(err.Error(), "dns server") {
		t.Errorf("Ready after Shutdown: %v", err)
	}
}

// TestSlowTCPClients: hundreds of TCP clients that connect and send nothing hold at most
// maxTCPConns connections, are cut by the read timeout, and never stop the server from
// answering (UDP at once, TCP once they are gone).
func TestSlowTCPClients(t *testing.T) {
	l := newLab(t, TableConfig{}, nil)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 300 {
		c, err := net.Dial("tcp", l.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	onlyA(t, l.ask(t, "udp", "v4only.example", dns.TypeA))
	// Past the cap, connections are closed at once: their reads end without waiting.
	closed := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closed++
		}
	}
	if closed < 300-maxTCPConns {
		t.Errorf("%d of 300 idle TCP connections closed, want at least %d (the cap is %d)", closed, 300-maxTCPConns, maxTCPConns)
	}
	onlyA(t, l.ask(t, "tcp", "v4only.example", dns.TypeA))
	if got := testutil.ToFloat64(l.metrics.queries.WithLabelValues("none", AnswerOverload)); got < 300-maxTCPConns {
		t.Errorf("refused TCP connections counted %v times", got)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
