package resolver

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzReply feeds arbitrary datagrams to matchReply and parseReply, as answers to one
// A question: no panic, never more than maxAddrs addresses, never more than
// maxCNAMEDepth+1 CNAME hops, and a parse error only for a datagram that is ours.
func FuzzReply(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion("host.example.", dns.TypeA)
	q.Id = 0x1234
	seed := func(m *dns.Msg) {
		p, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	ok := new(dns.Msg)
	ok.SetReply(q)
	for i := range 40 {
		ok.Answer = append(ok.Answer, &dns.A{Hdr: dns.RR_Header{Name: "host.example.", Rrtype: dns.TypeA,
			Class: dns.ClassINET, Ttl: uint32(i) << 26}, A: []byte{192, 0, 2, byte(i)}})
	}
	seed(ok)
	loop := new(dns.Msg)
	loop.SetReply(q)
	loop.Answer = []dns.RR{
		&dns.CNAME{Hdr: dns.RR_Header{Name: "host.example.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET}, Target: "b.example."},
		&dns.CNAME{Hdr: dns.RR_Header{Name: "b.example.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET}, Target: "host.example."},
	}
	seed(loop)
	head, _ := ok.Pack()
	f.Add(head[:len(head)-2])                                                       // cut mid-record
	const qEnd = 12 + len("host.example.") + 1 + 4                                  // header and question
	f.Add(append(head[:qEnd:qEnd], 0xC0, byte(qEnd), 0, 1, 0, 1, 0, 0, 0, 0, 0, 4)) // pointer to itself
	f.Add([]byte{0x12, 0x34, 0x82})                                                 // shorter than a header
	f.Fuzz(func(t *testing.T, p []byte) {
		resp, ours, err := matchReply(q, p)
		switch {
		case !ours && (resp != nil || err != nil):
			t.Fatalf("not ours, yet %v %v", resp, err)
		case err != nil || resp == nil:
			return
		}
		r := parseReply(resp, "host.example.", dns.TypeA)
		if len(r.addrs) > maxAddrs || r.hops > maxCNAMEDepth+1 {
			t.Fatalf("%d addresses, %d hops", len(r.addrs), r.hops)
		}
		if r.ttl > 1<<31-1 && len(r.addrs) > 0 {
			t.Fatalf("TTL %d kept with the top bit set", r.ttl)
		}
	})
}
