package egress

import (
	"context"
	"hash/fnv"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nat464/nat464-sidecar/resolver"
)

// fakeLookup answers from the name's hash: some names have AAAA, some A, some neither or do not
// exist, so that every branch of the A path is reached without sockets.
type fakeLookup struct{}

func (fakeLookup) pick(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return h.Sum32() % 5
}

func (f fakeLookup) LookupAAAA(_ context.Context, name string) ([]netip.Addr, time.Duration, error) {
	switch f.pick(name) {
	case 0, 1:
		return []netip.Addr{netip.MustParseAddr("2001:db8::1")}, time.Minute, nil
	case 2:
		return nil, 0, resolver.ErrNoData
	case 3:
		return nil, 0, resolver.ErrNXDomain
	}
	return nil, 0, resolver.ErrServFail
}

func (f fakeLookup) LookupA(_ context.Context, name string) ([]netip.Addr, time.Duration, error) {
	switch f.pick(name) {
	case 1, 2:
		return []netip.Addr{netip.MustParseAddr("192.0.2.1")}, 10 * time.Second, nil
	case 3:
		return nil, 0, resolver.ErrNXDomain
	}
	return nil, 0, resolver.ErrNoData
}

// echoUpstream answers every question with one record of each kind the server rewrites.
func echoUpstream(_ context.Context, m *dns.Msg, _ string, _ netip.AddrPort) (*dns.Msg, error) {
	r := new(dns.Msg)
	r.SetReply(m)
	name := m.Question[0].Name
	for _, s := range []string{"60 IN A 192.0.2.7", "60 IN HTTPS 1 . alpn=h2 ipv4hint=192.0.2.8",
		"60 IN SOA ns. host. 1 2 3 4 5"} {
		if rr, err := dns.NewRR(dns.Fqdn(name) + " " + s); err == nil {
			r.Extra = append(r.Extra, rr)
		}
	}
	return r, nil
}

// FuzzAnswer feeds raw packets to the request path: nothing panics, every answer packs, keeps the
// question's ID, and every IPv4 address in it is an egress address.
func FuzzAnswer(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"a.example.", dns.TypeA}, {"b.example.", dns.TypeAAAA}, {"1.0.100.127.in-addr.arpa.", dns.TypePTR},
		{"svc.example.", dns.TypeHTTPS}, {"_x._tcp.example.", dns.TypeSRV}, {".", dns.TypeNS}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, false)
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0})
	tb, _, err := NewTable(TableConfig{Range: netip.MustParsePrefix("127.100.0.0/28")})
	if err != nil {
		f.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{Table: tb, Resolver: fakeLookup{}, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")},
		Reach4: func() bool { return true }, Exchange: echoUpstream})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		req := new(dns.Msg)
		if req.Unpack(pkt) != nil {
			return
		}
		for _, network := range []string{"udp", "tcp"} {
			resp := srv.Answer(context.Background(), req, network)
			if resp == nil {
				if !req.Response {
					t.Fatalf("no answer to a question: %v", req)
				}
				continue
			}
			if resp.Id != req.Id || !resp.Response {
				t.Fatalf("answer id %d response=%v for id %d", resp.Id, resp.Response, req.Id)
			}
			if _, err := resp.Pack(); err != nil {
				t.Fatalf("answer does not pack: %v\n%v", err, resp)
			}
			for _, sec := range [][]dns.RR{resp.Answer, resp.Ns, resp.Extra} {
				for _, rr := range sec {
					if a, ok := rr.(*dns.A); ok {
						addr, _ := netip.AddrFromSlice(a.A)
						if !tb.Range().Contains(addr.Unmap()) {
							t.Fatalf("a real IPv4 address left the server: %v", rr)
						}
					}
				}
			}
		}
	})
}
