package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/nat464/nat464-sidecar/resolver"
)

// Lookuper is the sidecar's own resolver, asked one absolute name and one type at a time
// (resolver.Resolver: cached, and never the pod's resolv.conf nameservers in this mode).
type Lookuper interface {
	LookupAAAA(ctx context.Context, name string) ([]netip.Addr, time.Duration, error)
	LookupA(ctx context.Context, name string) ([]netip.Addr, time.Duration, error)
}

// ServerConfig configures a Server. Zero values get the defaults their comments name.
type ServerConfig struct {
	// Table gives out the addresses; required.
	Table *Table
	// Resolver decides whether a name exists and can be reached; required.
	Resolver Lookuper
	// Upstreams are the real resolvers every other question is forwarded to, in order;
	// required.
	Upstreams []netip.AddrPort
	// Reach4 reports whether a name with A records only can be reached (NAT64 has a prefix);
	// if nil, it cannot.
	Reach4 func() bool
	// Bind is called with each fresh address before the answer that gives it out is sent, so
	// that the front end listens on it by the time the app connects; may be nil.
	Bind func(a netip.Addr, name string)
	// Timeout bounds the work on one question, upstream exchanges included; if zero, 5s.
	Timeout time.Duration
	// MaxTTL caps the TTL of the A answers the server makes; if zero, 300s.
	MaxTTL time.Duration
	// MaxInFlight bounds the questions being answered at once; over it, SERVFAIL at once. If
	// zero, 256.
	MaxInFlight int
	// Exchange sends m to one upstream over network ("udp" or "tcp"); if nil, a miekg/dns
	// client. A test seam.
	Exchange func(ctx context.Context, m *dns.Msg, network string, server netip.AddrPort) (*dns.Msg, error)
	Metrics  *Metrics
	Log      *slog.Logger
}

func (c *ServerConfig) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 5 * time.Second
}

func (c *ServerConfig) maxTTL() time.Duration {
	if c.MaxTTL > 0 {
		return c.MaxTTL
	}
	return 300 * time.Second
}

func (c *ServerConfig) maxInFlight() int {
	if c.MaxInFlight > 0 {
		return c.MaxInFlight
	}
	return 256
}

func (c *ServerConfig) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Answers, the values of the dns_queries_total "answer" label.
const (
	AnswerEgress    = "egress"    // an A answer with an egress address
	AnswerPTR       = "ptr"       // the name behind an egress address
	AnswerForwarded = "forwarded" // the upstream's answer, as it came (hints rewritten)
	AnswerNXDomain  = "nxdomain"
	AnswerNoData    = "nodata"
	AnswerServFail  = "servfail"
	AnswerFormErr   = "formerr"
	AnswerNotImp    = "notimp"
	AnswerOverload  = "overload" // MaxInFlight questions were being answered
)

// Server is the pod's DNS server in transparent-egress mode: A questions get egress addresses,
// everything else goes upstream. It serves UDP and TCP on one address.
type Server struct {
	cfg      ServerConfig
	sem      chan struct{}
	neg      negCache
	exchange func(ctx context.Context, m *dns.Msg, network string, server netip.AddrPort) (*dns.Msg, error)

	mu      sync.Mutex
	addr    netip.AddrPort
	servers []*dns.Server
	failed  error // a serve loop that ended on its own
	closed  bool
	wg      sync.WaitGroup
}

// NewServer returns a server; Listen starts it.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Table == nil || cfg.Resolver == nil {
		return nil, errors.New("egress: server needs a Table and a Resolver")
	}
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("egress: server needs an upstream resolver")
	}
	s := &Server{cfg: cfg, sem: make(chan struct{}, cfg.maxInFlight()), exchange: cfg.Exchange}
	if s.exchange == nil {
		s.exchange = exchange
	}
	s.neg.max = 1024
	return s, nil
}

func exchange(ctx context.Context, m *dns.Msg, network string, server netip.AddrPort) (*dns.Msg, error) {
	c := &dns.Client{Net: network}
	r, _, err := c.ExchangeContext(ctx, m, server.String())
	return r, err
}

// Listen binds addr over UDP and TCP (the same port for both) and serves until Shutdown. It
// returns the bound address once both sockets are bound, or the first bind error.
func (s *Server) Listen(addr netip.AddrPort) (netip.AddrPort, error) {
	pc, ln, err := listenPair(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	bound := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	udp := &dns.Server{PacketConn: pc, Handler: s, ReadTimeout: 2 * time.Second}
	capped := &capListener{Listener: ln, max: maxTCPConns, refuse: func() { s.cfg.Metrics.query("none", AnswerOverload) }}
	tcp := &dns.Server{Listener: capped, Handler: s, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		IdleTimeout: func() time.Duration { return 10 * time.Second }, MaxTCPQueries: 128}
	s.mu.Lock()
	s.addr = netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port())
	s.servers = []*dns.Server{udp, tcp}
	s.mu.Unlock()
	started := make(chan struct{}, len(s.servers))
	for _, srv := range s.servers {
		// Shutdown before a server runs would find nothing to stop: Listen returns once both run.
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := srv.ActivateAndServe()
			s.mu.Lock()
			if err != nil && !s.closed {
				s.failed = fmt.Errorf("egress: dns server stopped: %w", err)
			}
			s.mu.Unlock()
			started <- struct{}{} // a server that failed to start has started as much as it will
		}()
	}
	for range s.servers {
		<-started
	}
	return s.addr, nil
}

// listenPair binds UDP and TCP on one port of addr. With port 0, the port UDP got may be taken
// for TCP: a few other ports are tried.
func listenPair(addr netip.AddrPort) (net.PacketConn, net.Listener, error) {
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr.String())
		if errors.Is(err, syscall.EACCES) && addr.Port() < 1024 {
			return nil, nil, fmt.Errorf("egress: dns server: %w (an unprivileged process binds port %d only where the pod sets the sysctl net.ipv4.ip_unprivileged_port_start to %d or less)",
				err, addr.Port(), addr.Port())
		}
		if err != nil {
			return nil, nil, fmt.Errorf("egress: dns server: %w", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(addr.Addr().String(), fmt.Sprint(port)))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if addr.Port() != 0 || try == 8 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("egress: dns server: %w", err)
		}
	}
}

// Shutdown stops both listeners and waits for the questions being answered, bounded by ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.servers = nil
	s.closed = true
	s.mu.Unlock()
	var first error
	for _, srv := range servers {
		if err := srv.ShutdownContext(ctx); err != nil && first == nil {
			first = err
		}
	}
	s.wg.Wait()
	return first
}

// Ready asks the server, over UDP as an app would, the one question it answers without an
// upstream (the name of the range's first address, which is never given out: NXDOMAIN).
func (s *Server) Ready(ctx context.Context) error {
	s.mu.Lock()
	addr, failed, closed := s.addr, s.failed, s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return errors.New("egress: dns server shut down")
	case failed != nil:
		return failed
	}
	if !addr.IsValid() {
		return errors.New("egress: dns server not listening")
	}
	probe := addr
	if probe.Addr().IsUnspecified() {
		probe = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), addr.Port())
		if addr.Addr().Is6() && !addr.Addr().Is4In6() {
			probe = netip.AddrPortFrom(netip.IPv6Loopback(), addr.Port())
		}
	}
	m := new(dns.Msg)
	rev, _ := dns.ReverseAddr(s.cfg.Table.Range().Addr().String())
	m.SetQuestion(rev, dns.TypePTR)
	r, err := exchange(ctx, m, "udp", probe)
	if err != nil {
		return fmt.Errorf("egress: dns server does not answer on %s: %w", probe, err)
	}
	if r.Rcode != dns.RcodeNameError {
		return fmt.Errorf("egress: dns server probe got %s", dns.RcodeToString[r.Rcode])
	}
	return nil
}

// ServeDNS answers one question (miekg/dns calls it on a goroutine per question).
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	resp := s.Answer(context.Background(), req, network)
	if resp == nil {
		return
	}
	if network == "udp" {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil && int(o.UDPSize()) > size {
			size = int(o.UDPSize())
		}
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

// Answer is the whole request path: it returns the response to req, asked over network
// ("udp" or "tcp"), or nil when req gets no answer at all (it is itself a response).
func (s *Server) Answer(ctx context.Context, req *dns.Msg, network string) *dns.Msg {
	if req == nil || req.Response {
		return nil
	}
	qtype := "none"
	if len(req.Question) == 1 {
		qtype = typeLabel(req.Question[0].Qtype)
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		s.cfg.Metrics.query(qtype, AnswerOverload)
		return rcode(req, dns.RcodeServerFailure)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout())
	defer cancel()
	resp, answer := s.answer(ctx, req, network)
	s.cfg.Metrics.query(qtype, answer)
	return resp
}

func (s *Server) answer(ctx context.Context, req *dns.Msg, network string) (*dns.Msg, string) {
	if len(req.Question) != 1 {
		return rcode(req, dns.RcodeFormatError), AnswerFormErr
	}
	if req.Opcode != dns.OpcodeQuery {
		return rcode(req, dns.RcodeNotImplemented), AnswerNotImp
	}
	q := req.Question[0]
	if q.Qclass == dns.ClassINET {
		switch q.Qtype {
		case dns.TypeA:
			return s.answerA(ctx, req, network)
		case dns.TypePTR:
			if a, ok := reverseAddr(q.Name); ok && s.cfg.Table.Range().Contains(a) {
				return s.answerPTR(req, a)
			}
		}
	}
	return s.forwarded(ctx, req, network)
}

// answerA gives a name that exists and can be reached its egress address; a name that does
// not exist gets the upstream's NXDOMAIN, one without a usable address NODATA.
func (s *Server) answerA(ctx context.Context, req *dns.Msg, network string) (*dns.Msg, string) {
	q := req.Question[0]
	name, ok := canonical(q.Name)
	if !ok {
		return rcode(req, dns.RcodeFormatError), AnswerFormErr
	}
	type result struct {
		addrs []netip.Addr
		ttl   time.Duration
		err   error
	}
	ch6 := make(chan result, 1)
	go func() {
		a, ttl, err := s.cfg.Resolver.LookupAAAA(ctx, name)
		ch6 <- result{a, ttl, err}
	}()
	a4, ttl4, err4 := s.cfg.Resolver.LookupA(ctx, name)
	r6 := <-ch6
	reach4 := s.cfg.Reach4 != nil && s.cfg.Reach4()
	var ttl time.Duration
	switch {
	case len(r6.addrs) > 0 && len(a4) > 0 && reach4:
		ttl = min(r6.ttl, ttl4)
	case len(r6.addrs) > 0:
		ttl = r6.ttl
	case len(a4) > 0 && reach4:
		ttl = ttl4
	case errors.Is(r6.err, resolver.ErrNXDomain) || errors.Is(err4, resolver.ErrNXDomain):
		return s.negative(ctx, req, network, dns.RcodeNameError)
	case len(a4) > 0: // IPv4 only and no NAT64 prefix: an address would only fail at connect
		return reply(req), AnswerNoData
	case isNoData(r6.err) && isNoData(err4):
		return s.negative(ctx, req, network, dns.RcodeSuccess)
	default:
		s.cfg.log().Debug("egress: lookup failed", "name", name, "aaaa", r6.err, "a", err4)
		return rcode(req, dns.RcodeServerFailure), AnswerServFail
	}
	addr, fresh, err := s.cfg.Table.Assign(name)
	if err != nil {
		if exhaustedWarnings.allow() {
			s.cfg.log().Error("egress: no address for a name: answering SERVFAIL", "name", name, "err", err)
		}
		return rcode(req, dns.RcodeServerFailure), AnswerServFail
	}
	if fresh {
		s.cfg.log().Debug("egress address assigned", "name", name, "addr", addr.String())
		if s.cfg.Bind != nil {
			s.cfg.Bind(addr, name)
		}
	}
	resp := reply(req)
	resp.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET,
		Ttl: ttlSeconds(ttl, s.cfg.maxTTL())}, A: addr.AsSlice()}}
	return resp, AnswerEgress
}

func isNoData(err error) bool { return errors.Is(err, resolver.ErrNoData) }

// ttlSeconds is an answer's TTL: the upstream's remaining one, at least 1 s, capped.
func ttlSeconds(ttl, maxTTL time.Duration) uint32 {
	return uint32(min(max(ttl, time.Second), maxTTL) / time.Second)
}

// negative answers NXDOMAIN or NODATA with the upstream's own response (its SOA lets clients
// cache the answer, RFC 2308), cached here for its negative TTL; without an upstream response
// (or if the upstream now disagrees) the answer is made here without an SOA.
func (s *Server) negative(ctx context.Context, req *dns.Msg, network string, code int) (*dns.Msg, string) {
	label := AnswerNXDomain
	if code == dns.RcodeSuccess {
		label = AnswerNoData
	}
	q := req.Question[0]
	key := negKey{name: strings.ToLower(q.Name), qtype: q.Qtype}
	if m := s.neg.get(key, time.Now()); m != nil && m.Rcode == code {
		return withID(m, req), label
	}
	up, err := s.forward(ctx, req, network)
	if err != nil || up.Rcode != code || (code == dns.RcodeSuccess && hasType(up.Answer, dns.TypeA)) {
		m := rcode(req, code)
		return m, label
	}
	up.Answer = nil
	if ttl, ok := negTTL(up); ok {
		s.neg.put(key, up, time.Now().Add(min(ttl, s.cfg.maxTTL())))
	}
	return up, label
}

// answerPTR names the name behind an egress address; an address of the range that no name holds
// does not exist.
func (s *Server) answerPTR(req *dns.Msg, a netip.Addr) (*dns.Msg, string) {
	name, ok := s.cfg.Table.Name(a)
	if !ok {
		m := rcode(req, dns.RcodeNameError)
		m.Authoritative = true
		return m, AnswerNXDomain
	}
	resp := reply(req)
	resp.Authoritative = true
	resp.Answer = []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypePTR,
		Class: dns.ClassINET, Ttl: uint32(s.cfg.maxTTL() / time.Second)}, Ptr: dns.Fqdn(name)}}
	return resp, AnswerPTR
}

// forwarded answers from the upstream, with every IPv4 address in it (A records in the
// additional section, SVCB/HTTPS ipv4hint) replaced by the egress address of its name or removed:
// a real IPv4 address is one the app cannot reach.
func (s *Server) forwarded(ctx context.Context, req *dns.Msg, network string) (*dns.Msg, string) {
	up, err := s.forward(ctx, req, network)
	if err != nil {
		s.cfg.log().Debug("egress: forward failed", "question", req.Question[0].String(), "err", err)
		return rcode(req, dns.RcodeServerFailure), AnswerServFail
	}
	up.Answer = s.scrub(up.Answer)
	up.Ns = s.scrub(up.Ns)
	up.Extra = s.scrub(up.Extra)
	switch {
	case up.Rcode == dns.RcodeNameError:
		return up, AnswerNXDomain
	case up.Rcode == dns.RcodeServerFailure:
		return up, AnswerServFail
	}
	return up, AnswerForwarded
}

// scrub rewrites the IPv4 addresses in rrs (see forwarded).
func (s *Server) scrub(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.A:
			a, ok := s.cfg.Table.Lookup(v.Hdr.Name)
			if !ok {
				continue
			}
			v.A = a.AsSlice()
		case *dns.SVCB:
			v.Value = s.hints(v.Value, svcbName(v.Hdr.Name, v.Target))
		case *dns.HTTPS:
			v.Value = s.hints(v.Value, svcbName(v.Hdr.Name, v.Target))
		}
		out = append(out, rr)
	}
	return out
}

func svcbName(owner, target string) string {
	if target == "." || target == "" {
		return owner
	}
	return target
}

func (s *Server) hints(kv []dns.SVCBKeyValue, name string) []dns.SVCBKeyValue {
	out := kv[:0]
	for _, v := range kv {
		if h, ok := v.(*dns.SVCBIPv4Hint); ok {
			a, known := s.cfg.Table.Lookup(name)
			if !known {
				continue
			}
			h.Hint = []net.IP{a.AsSlice()}
		}
		out = append(out, v)
	}
	return out
}

// forward asks the upstreams in order (with a fresh ID) and returns the first answer that is
// not SERVFAIL or REFUSED, else the last answer or error.
func (s *Server) forward(ctx context.Context, req *dns.Msg, network string) (*dns.Msg, error) {
	m := req.Copy()
	m.Id = dns.Id()
	var last *dns.Msg
	var lastErr error
	for _, up := range s.cfg.Upstreams {
		r, err := s.exchange(ctx, m, network, up)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if r.Id != m.Id || len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, req.Question[0].Name) {
			lastErr = errors.New("egress: upstream answered another question")
			continue
		}
		last = r
		if r.Rcode != dns.RcodeServerFailure && r.Rcode != dns.RcodeRefused {
			break
		}
	}
	if last == nil {
		if lastErr == nil {
			lastErr = errors.New("egress: no upstream")
		}
		return nil, lastErr
	}
	return withID(last, req), nil
}

// withID is a copy of m answering req (its ID and question spelling).
func withID(m, req *dns.Msg) *dns.Msg {
	c := m.Copy()
	c.Id = req.Id
	c.Question = []dns.Question{req.Question[0]}
	return c
}

// reply is an empty NOERROR response to req (recursion available, as a resolver's).
func reply(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	return m
}

func rcode(req *dns.Msg, code int) *dns.Msg {
	m := new(dns.Msg)
	if len(req.Question) <= 1 {
		m.SetRcode(req, code)
	} else {
		m.SetRcodeFormatError(req)
		m.Question = nil
	}
	m.RecursionAvailable = true
	return m
}

func hasType(rrs []dns.RR, t uint16) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == t {
			return true
		}
	}
	return false
}

// reverseAddr parses an in-addr.arpa name into its IPv4 address.
func reverseAddr(name string) (netip.Addr, bool) {
	n := strings.ToLower(dns.Fqdn(name))
	rest, ok := strings.CutSuffix(n, ".in-addr.arpa.")
	if !ok {
		return netip.Addr{}, false
	}
	labels := strings.Split(rest, ".")
	if len(labels) != 4 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(labels[3] + "." + labels[2] + "." + labels[1] + "." + labels[0])
	if err != nil {
		return netip.Addr{}, false
	}
	return a, true
}

// negTTL is how long a negative response may be cached (RFC 2308 §5: the SOA's TTL, at most its
// MINIMUM field).
func negTTL(m *dns.Msg) (time.Duration, bool) {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second, true
		}
	}
	return 0, false
}

type negKey struct {
	name  string
	qtype uint16
}

type negEntry struct {
	m       *dns.Msg
	expires time.Time
}

// negCache keeps upstream negative responses for their TTL, so the search-list misses of ndots:5
// (several per name an app resolves) cost the upstream one question each, not one per lookup.
type negCache struct {
	mu  sync.Mutex
	max int
	m   map[negKey]negEntry
}

func (c *negCache) get(k negKey, now time.Time) *dns.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return nil
	}
	if !now.Before(e.expires) {
		delete(c.m, k)
		return nil
	}
	return e.m
}

func (c *negCache) put(k negKey, m *dns.Msg, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[negKey]negEntry{}
	}
	if len(c.m) >= c.max {
		now := time.Now()
		for k, e := range c.m { // expired first, else an arbitrary one
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[k] = negEntry{m: m.Copy(), expires: expires}
}

// typeLabel bounds the "type" label to the types an app asks for.
func typeLabel(t uint16) string {
	switch t {
	case dns.TypeA, dns.TypeAAAA, dns.TypePTR, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeSRV, dns.TypeTXT,
		dns.TypeMX, dns.TypeCNAME, dns.TypeNS, dns.TypeSOA, dns.TypeANY, dns.TypeCAA:
		return dns.TypeToString[t]
	}
	return "other"
}
