package main

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestNameServer(t *testing.T) {
	checkLeaks(t)
	s := &NameServer{TTL: 42 * time.Second}
	addr, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  string // the answer's address, "" for none
	}{
		{benchName, dns.TypeA, dns.RcodeSuccess, "127.0.0.1"},
		{"App.Bench.Test", dns.TypeAAAA, dns.RcodeSuccess, "::1"},
		{benchName, dns.TypeMX, dns.RcodeSuccess, ""},
		{"other.test", dns.TypeA, dns.RcodeNameError, ""},
	}
	c := &dns.Client{Timeout: 2 * time.Second}
	for _, tt := range tests {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(tt.name), tt.qtype)
		r, _, err := c.Exchange(q, addr)
		if err != nil {
			t.Errorf("%s %s: %v", tt.name, dns.TypeToString[tt.qtype], err)
			continue
		}
		got := ""
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				got = rr.A.String()
			case *dns.AAAA:
				got = rr.AAAA.String()
			}
			if rr.Header().Ttl != 42 {
				t.Errorf("%s: TTL %d, want 42", tt.name, rr.Header().Ttl)
			}
		}
		if r.Rcode != tt.rcode || got != tt.want {
			t.Errorf("%s %s: rcode %d answer %q, want %d %q", tt.name, dns.TypeToString[tt.qtype], r.Rcode, got, tt.rcode, tt.want)
		}
	}
}
