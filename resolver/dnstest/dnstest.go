// Package dnstest is an in-process DNS server for tests, built on github.com/miekg/dns.
//
// Start(t) serves UDP and TCP on one port of 127.0.0.1 (StartAt(t, "::1") for IPv6) and
// shuts down at the end of the test. The zone is set from the test:
//
//	srv := dnstest.Start(t)
//	srv.AddAAAA("ipv4only.arpa", 600*time.Second, "64:ff9b::c000:aa", "64:ff9b::c000:ab")
//	srv.AddA("example.com", time.Minute, "192.0.2.1")
//	srv.AddCNAME("www.example.com", time.Minute, "example.com")
//	srv.AddRR("example.org. 300 IN AAAA 2001:db8::1") // any record in zone-file syntax
//	addr := srv.Addr() // netip.AddrPort to put in resolver.Config.Servers
//
// Names are case-insensitive and taken as absolute. A question for a name with records of
// its type gets them; a name with only a CNAME gets the chain, followed within the zone; a
// name with other records gets NODATA and a name without any gets NXDOMAIN, both with an SOA
// in the authority section whose TTL and MINIMUM are NegativeTTL (default 60s; SetNegativeTTL).
//
// Per-name, per-type behaviour (Set, with qtype 0 for every type) can delay the reply, drop
// it, hold it until a channel closes, force NXDOMAIN, NODATA, SERVFAIL or REFUSED, truncate
// it over UDP (TC bit, the full answer only over TCP), leave the SOA out of negative replies,
// or stop CNAME chasing after the first hop.
//
// Every query is recorded with its transport: Count(name, qtype, transport) and Queries()
// let tests assert exactly which questions were sent, and WaitFor blocks until some arrive.
//
// StartHostile is a different, raw server for resolver robustness tests: it misbehaves in one
// chosen Mode (silence, spoofed or mismatched replies, truncated, garbled or looping packets,
// CNAME loops, huge answers, extreme TTLs, stalled TCP), with packets built by hand.
package dnstest

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Behavior changes how the server answers one name and type.
type Behavior struct {
	// Delay postpones the reply.
	Delay time.Duration
	// Hold, if not nil, postpones the reply until it is closed (or the server closes).
	Hold <-chan struct{}
	// Drop never answers.
	Drop bool
	// Rcode, if not zero, is answered with no records (dns.RcodeNameError,
	// dns.RcodeServerFailure, dns.RcodeRefused, ...); NXDOMAIN carries the SOA.
	Rcode int
	// NoData answers NOERROR with no records (and the SOA) whatever the zone holds.
	NoData bool
	// Truncate answers UDP questions with the TC bit and no records; TCP gets the answer.
	Truncate bool
	// NoSOA leaves the SOA out of negative replies.
	NoSOA bool
	// NoChase answers a CNAME without following it to the target's records.
	NoChase bool
}

// Query is one question the server received.
type Query struct {
	Name      string // lower-case, absolute
	Type      uint16
	Transport string // "udp" or "tcp"
}

// Server is the fake DNS server. Its methods are safe for concurrent use.
type Server struct {
	t    testing.TB
	addr netip.AddrPort
	udp  *dns.Server
	tcp  *dns.Server
	quit chan struct{}
	once sync.Once

	mu       sync.Mutex
	zone     map[string][]dns.RR
	behavior map[behaviorKey]Behavior
	negTTL   uint32
	queries  []Query
	changed  chan struct{} // closed and replaced on every query
}

type behaviorKey struct {
	name  string
	qtype uint16
}

// Start serves on 127.0.0.1 with a random port (the same for UDP and TCP).
func Start(t testing.TB) *Server { return StartAt(t, "127.0.0.1") }

// StartAt serves on the given IP literal ("::1" for IPv6) with a random port.
func StartAt(t testing.TB, ip string) *Server {
	t.Helper()
	s := &Server{
		t:        t,
		quit:     make(chan struct{}),
		zone:     make(map[string][]dns.RR),
		behavior: make(map[behaviorKey]Behavior),
		negTTL:   60,
		changed:  make(chan struct{}),
	}
	pc, ln := listenPair(t, ip)
	s.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	s.udp = s.serve(t, &dns.Server{PacketConn: pc})
	s.tcp = s.serve(t, &dns.Server{Listener: ln})
	t.Cleanup(s.Close)
	return s
}

// listenPair opens UDP and TCP sockets on one port, retrying if the TCP port is taken.
func listenPair(t testing.TB, ip string) (net.PacketConn, net.Listener) {
	for range 20 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("dnstest: listen udp: %v", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	t.Fatalf("dnstest: no port free for both udp and tcp on %s", ip)
	return nil, nil
}

func (s *Server) serve(t testing.TB, srv *dns.Server) *dns.Server {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	srv.Handler = dns.HandlerFunc(s.handle)
	errc := make(chan error, 1)
	go func() { errc <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-errc:
		t.Fatalf("dnstest: serve: %v", err)
	}
	return srv
}

// Addr is the address to send queries to (UDP and TCP).
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Close stops the server, releasing held and delayed replies; it is idempotent and is
// registered with t.Cleanup by Start.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.quit)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.udp.ShutdownContext(ctx)
		s.tcp.ShutdownContext(ctx)
	})
}

// fqdn normalises a name to lower-case absolute form.
func fqdn(name string) string { return strings.ToLower(dns.Fqdn(name)) }
