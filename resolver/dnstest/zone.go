package dnstest

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// AddAAAA adds AAAA records for name with the given TTL (whole seconds).
func (s *Server) AddAAAA(name string, ttl time.Duration, addrs ...string) {
	s.t.Helper()
	for _, a := range addrs {
		ip := s.parseIP(a, true)
		s.add(&dns.AAAA{Hdr: s.hdr(name, dns.TypeAAAA, ttl), AAAA: ip.AsSlice()})
	}
}

// AddA adds A records for name with the given TTL (whole seconds).
func (s *Server) AddA(name string, ttl time.Duration, addrs ...string) {
	s.t.Helper()
	for _, a := range addrs {
		ip := s.parseIP(a, false)
		s.add(&dns.A{Hdr: s.hdr(name, dns.TypeA, ttl), A: ip.AsSlice()})
	}
}

// AddCNAME makes name an alias of target.
func (s *Server) AddCNAME(name string, ttl time.Duration, target string) {
	s.add(&dns.CNAME{Hdr: s.hdr(name, dns.TypeCNAME, ttl), Target: fqdn(target)})
}

// AddRR adds records written in zone-file syntax ("name ttl IN type data").
func (s *Server) AddRR(records ...string) {
	s.t.Helper()
	for _, text := range records {
		rr, err := dns.NewRR(text)
		if err != nil || rr == nil {
			s.t.Fatalf("dnstest: bad record %q: %v", text, err)
		}
		rr.Header().Name = fqdn(rr.Header().Name)
		s.add(rr)
	}
}

// Remove deletes every record of name.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.zone, fqdn(name))
}

// SetNegativeTTL sets the TTL and MINIMUM of the SOA sent with negative answers.
func (s *Server) SetNegativeTTL(ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.negTTL = uint32(ttl / time.Second)
}

// Set gives name and qtype (0: every type) a behaviour; the zero Behavior restores normal
// answers.
func (s *Server) Set(name string, qtype uint16, b Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := behaviorKey{fqdn(name), qtype}
	if b == (Behavior{}) {
		delete(s.behavior, k)
		return
	}
	s.behavior[k] = b
}

// Count returns how many questions for name (any name if ""), qtype (any if 0) and
// transport ("udp", "tcp", or "" for both) the server has received.
func (s *Server) Count(name string, qtype uint16, transport string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countLocked(name, qtype, transport)
}

func (s *Server) countLocked(name string, qtype uint16, transport string) int {
	n := 0
	for _, q := range s.queries {
		if (name == "" || q.Name == fqdn(name)) && (qtype == 0 || q.Type == qtype) &&
			(transport == "" || q.Transport == transport) {
			n++
		}
	}
	return n
}

// Queries returns every question received so far, in arrival order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// ResetQueries forgets the questions received so far.
func (s *Server) ResetQueries() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries = nil
}

// WaitFor blocks until at least n questions for name and qtype (as in Count) have arrived,
// or ctx ends.
func (s *Server) WaitFor(ctx context.Context, name string, qtype uint16, n int) error {
	for {
		s.mu.Lock()
		got, changed := s.countLocked(name, qtype, ""), s.changed
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Server) add(rr dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := rr.Header().Name
	s.zone[name] = append(s.zone[name], rr)
}

func (s *Server) hdr(name string, rrtype uint16, ttl time.Duration) dns.RR_Header {
	return dns.RR_Header{Name: fqdn(name), Rrtype: rrtype, Class: dns.ClassINET, Ttl: uint32(ttl / time.Second)}
}

func (s *Server) parseIP(text string, v6 bool) netip.Addr {
	s.t.Helper()
	ip, err := netip.ParseAddr(text)
	if err != nil || ip.Is4() == v6 {
		s.t.Fatalf("dnstest: bad address %q for this record type", text)
	}
	return ip
}

// handle answers one question according to the zone and the behaviours.
func (s *Server) handle(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	transport := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		transport = "tcp"
	}
	name := fqdn(q.Name)
	s.mu.Lock()
	s.queries = append(s.queries, Query{Name: name, Type: q.Qtype, Transport: transport})
	close(s.changed)
	s.changed = make(chan struct{})
	b, ok := s.behavior[behaviorKey{name, q.Qtype}]
	if !ok {
		b = s.behavior[behaviorKey{name, 0}]
	}
	resp := s.build(req, name, q.Qtype, b, transport)
	s.mu.Unlock()

	if b.Drop || !s.wait(b) {
		return
	}
	w.WriteMsg(resp)
}

// wait applies Delay and Hold; false means the server is closing.
func (s *Server) wait(b Behavior) bool {
	if b.Delay > 0 {
		t := time.NewTimer(b.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.quit:
			return false
		}
	}
	if b.Hold != nil {
		select {
		case <-b.Hold:
		case <-s.quit:
			return false
		}
	}
	return true
}

// build makes the reply. s.mu is held.
func (s *Server) build(req *dns.Msg, name string, qtype uint16, b Behavior, transport string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative, m.RecursionAvailable = true, true
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	switch {
	case b.Rcode != 0:
		m.Rcode = b.Rcode
		if b.Rcode == dns.RcodeNameError {
			s.addSOA(m, b)
		}
	case b.Truncate && transport == "udp":
		m.Truncated = true
	case b.NoData:
		s.addSOA(m, b)
	default:
		s.answer(m, name, qtype, b)
	}
	return m
}

// answer fills m from the zone, following CNAMEs (bounded, so loops end).
func (s *Server) answer(m *dns.Msg, name string, qtype uint16, b Behavior) {
	cur := name
	for range 16 {
		rrs := s.zone[cur]
		var cname *dns.CNAME
		found := false
		for _, rr := range rrs {
			if rr.Header().Rrtype == qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
				found = true
			}
			if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		switch {
		case found:
			return
		case cname != nil:
			m.Answer = append(m.Answer, dns.Copy(cname))
			if b.NoChase {
				return
			}
			cur = cname.Target
			continue
		case len(rrs) == 0:
			m.Rcode = dns.RcodeNameError
		}
		s.addSOA(m, b)
		return
	}
}

func (s *Server) addSOA(m *dns.Msg, b Behavior) {
	if b.NoSOA {
		return
	}
	m.Ns = append(m.Ns, &dns.SOA{
		Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.negTTL},
		Ns:  "ns.dnstest.", Mbox: "hostmaster.dnstest.",
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: s.negTTL,
	})
}
