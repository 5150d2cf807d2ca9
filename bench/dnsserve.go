package main

import (
	"cmp"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// benchName is the host name the DNS tests send to the proxies; the bench
// DNS server answers it with both loopback addresses. .test is reserved
// (RFC 6761), so no real resolver answers it.
const benchName = "app.bench.test"

// dnsTTL is the TTL of the bench DNS server's answers: long enough that a
// caching proxy asks once per run.
const dnsTTL = 300 * time.Second

// NameServer is the bench DNS server: over UDP it answers AAAA ::1 and A
// 127.0.0.1 for Name, NOERROR without answers for its other types, and
// NXDOMAIN for every other name.
type NameServer struct {
	// Addr is the UDP address to listen on; if empty, 127.0.0.1:0.
	Addr string
	// Name is the name it answers; if empty, benchName.
	Name string
	// TTL of the answers; if zero, dnsTTL.
	TTL time.Duration

	srv *dns.Server
}

func (s *NameServer) name() string {
	return dns.Fqdn(strings.ToLower(cmp.Or(s.Name, benchName)))
}

// Start binds the socket, serves in the background and returns the address.
func (s *NameServer) Start() (string, error) {
	pc, err := net.ListenPacket("udp", cmp.Or(s.Addr, "127.0.0.1:0"))
	if err != nil {
		return "", fmt.Errorf("bench: dns: %w", err)
	}
	ttl := s.TTL
	if ttl <= 0 {
		ttl = dnsTTL
	}
	h := &nameHandler{name: s.name(), ttl: uint32(ttl / time.Second)}
	s.srv = &dns.Server{PacketConn: pc, Handler: h}
	started := make(chan struct{})
	failed := make(chan error, 1)
	s.srv.NotifyStartedFunc = func() { close(started) }
	go func() { failed <- s.srv.ActivateAndServe() }()
	select {
	case <-started:
		return pc.LocalAddr().String(), nil
	case err := <-failed:
		pc.Close()
		return "", fmt.Errorf("bench: dns: %w", err)
	}
}

// Close stops the server.
func (s *NameServer) Close() {
	if s.srv != nil {
		s.srv.Shutdown()
	}
}

type nameHandler struct {
	name string
	ttl  uint32
}

func (h *nameHandler) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) != 1 || strings.ToLower(q.Question[0].Name) != h.name {
		m.Rcode = dns.RcodeNameError
		w.WriteMsg(m)
		return
	}
	qq := q.Question[0]
	hdr := dns.RR_Header{Name: qq.Name, Class: dns.ClassINET, Ttl: h.ttl, Rrtype: qq.Qtype}
	switch qq.Qtype {
	case dns.TypeA:
		m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1)}}
	case dns.TypeAAAA:
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: net.IPv6loopback}}
	}
	w.WriteMsg(m)
}

func cmdDNS(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ExitOnError)
	addr := fs.String("listen", "127.0.0.1:0", "UDP address to listen on")
	name := fs.String("name", benchName, "the name to answer")
	ttl := fs.Duration("ttl", dnsTTL, "TTL of the answers")
	fs.Parse(args)
	ctx, stop := sigContext()
	defer stop()
	s := &NameServer{Addr: *addr, Name: *name, TTL: *ttl}
	a, err := s.Start()
	if err != nil {
		return err
	}
	fmt.Printf("%s%s\n", readyPrefix, a)
	<-ctx.Done()
	s.Close()
	return nil
}
