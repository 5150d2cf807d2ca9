package dnstest

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func exchange(t *testing.T, s *Server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := dns.Client{Net: network, Timeout: 2 * time.Second}
	resp, _, err := c.Exchange(m, s.Addr().String())
	if err != nil {
		t.Fatalf("%s %s: %v", network, name, err)
	}
	return resp
}

func TestServer(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	s := Start(t)
	s.AddAAAA("ipv4only.arpa", 600*time.Second, "64:ff9b::c000:aa")
	s.AddA("Mixed.Example", time.Minute, "192.0.2.1")
	s.AddCNAME("alias.example", time.Minute, "mixed.example")
	s.AddRR("txt.example. 30 IN TXT \"hello\"")
	s.SetNegativeTTL(42 * time.Second)
	s.Set("trunc.example", 0, Behavior{Truncate: true})
	s.AddA("trunc.example", time.Minute, "192.0.2.9")
	s.Set("fail.example", dns.TypeA, Behavior{Rcode: dns.RcodeServerFailure})
	s.Set("nochase.example", 0, Behavior{NoChase: true})
	s.AddCNAME("nochase.example", time.Minute, "mixed.example")

	tests := []struct {
		name    string
		network string
		qname   string
		qtype   uint16
		rcode   int
		answers int
		soa     bool
		tc      bool
	}{
		{"aaaa", "udp", "ipv4only.arpa", dns.TypeAAAA, dns.RcodeSuccess, 1, false, false},
		{"case-insensitive a over tcp", "tcp", "mixed.EXAMPLE", dns.TypeA, dns.RcodeSuccess, 1, false, false},
		{"nodata", "udp", "mixed.example", dns.TypeAAAA, dns.RcodeSuccess, 0, true, false},
		{"nxdomain", "udp", "missing.example", dns.TypeA, dns.RcodeNameError, 0, true, false},
		{"cname chased", "udp", "alias.example", dns.TypeA, dns.RcodeSuccess, 2, false, false},
		{"cname not chased", "udp", "nochase.example", dns.TypeA, dns.RcodeSuccess, 1, false, false},
		{"addrr", "udp", "txt.example", dns.TypeTXT, dns.RcodeSuccess, 1, false, false},
		{"truncated udp", "udp", "trunc.example", dns.TypeA, dns.RcodeSuccess, 0, false, true},
		{"truncated tcp", "tcp", "trunc.example", dns.TypeA, dns.RcodeSuccess, 1, false, false},
		{"servfail for one type", "udp", "fail.example", dns.TypeA, dns.RcodeServerFailure, 0, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := exchange(t, s, tc.network, tc.qname, tc.qtype)
			if r.Rcode != tc.rcode || len(r.Answer) != tc.answers || r.Truncated != tc.tc {
				t.Fatalf("reply %v", r)
			}
			if tc.soa {
				soa, ok := r.Ns[0].(*dns.SOA)
				if !ok || soa.Minttl != 42 || soa.Hdr.Ttl != 42 {
					t.Errorf("authority %v", r.Ns)
				}
			}
		})
	}
	if n := s.Count("trunc.example", dns.TypeA, "udp"); n != 1 {
		t.Errorf("udp count %d", n)
	}
	if n := s.Count("trunc.example", 0, ""); n != 2 {
		t.Errorf("total count %d", n)
	}
	if q := s.Queries()[1]; q != (Query{Name: "mixed.example.", Type: dns.TypeA, Transport: "tcp"}) {
		t.Errorf("second query %+v", q)
	}
}

func TestHoldDropAndClose(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	s := StartAt(t, "127.0.0.1")
	s.AddA("held.example", time.Minute, "192.0.2.1")
	hold := make(chan struct{})
	s.Set("held.example", 0, Behavior{Hold: hold})
	got := make(chan *dns.Msg, 1)
	go func() {
		m := new(dns.Msg)
		m.SetQuestion("held.example.", dns.TypeA)
		c := dns.Client{Timeout: 5 * time.Second}
		r, _, _ := c.Exchange(m, s.Addr().String())
		got <- r
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitFor(ctx, "held.example", dns.TypeA, 1); err != nil {
		t.Fatal(err)
	}
	close(hold)
	if r := <-got; r == nil || len(r.Answer) != 1 {
		t.Fatalf("held reply %v", r)
	}

	s.Set("gone.example", 0, Behavior{Drop: true})
	m := new(dns.Msg)
	m.SetQuestion("gone.example.", dns.TypeA)
	c := dns.Client{Timeout: 100 * time.Millisecond}
	if _, _, err := c.Exchange(m, s.Addr().String()); err == nil {
		t.Error("dropped question got a reply")
	}

	s.Set("forever.example", 0, Behavior{Hold: make(chan struct{})})
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		m := new(dns.Msg)
		m.SetQuestion("forever.example.", dns.TypeA)
		c := dns.Client{Timeout: 300 * time.Millisecond}
		c.Exchange(m, s.Addr().String())
	}()
	if err := s.WaitFor(ctx, "forever.example", 0, 1); err != nil {
		t.Fatal(err)
	}
	s.Close() // must not wait for the held reply
	s.Close()
	<-clientDone
}
