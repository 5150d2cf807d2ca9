package dnstest

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

// rawExchange sends one question for name and qtype and returns the raw packets that come
// back within wait (UDP: every datagram; TCP: the first length-prefixed message).
func rawExchange(t *testing.T, h *Hostile, network, name string, qtype uint16, wait time.Duration) (id uint16, pkts [][]byte) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(1232, false)
	c, err := net.Dial(network, h.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := mustPack(q)
	if network == "tcp" {
		p = append(binary.BigEndian.AppendUint16(nil, uint16(len(p))), p...)
	}
	if _, err := c.Write(p); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	if network == "tcp" {
		var n uint16
		if binary.Read(c, binary.BigEndian, &n) != nil {
			return q.Id, nil
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("tcp: short message: %v", err)
		}
		return q.Id, [][]byte{buf}
	}
	for {
		buf := make([]byte, 65535)
		n, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return q.Id, pkts
		}
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, buf[:n])
	}
}

func TestHostileModes(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	const wait = 100 * time.Millisecond
	one := func(t *testing.T, cfg HostileConfig, network string, qtype uint16) (uint16, *dns.Msg, []byte, error) {
		h := StartHostile(t, cfg)
		id, pkts := rawExchange(t, h, network, "host.example.", qtype, wait)
		if len(pkts) != 1 {
			t.Fatalf("%v over %s: %d packets, want 1", cfg.Mode, network, len(pkts))
		}
		m := new(dns.Msg)
		return id, m, pkts[0], m.Unpack(pkts[0])
	}
	t.Run("silent", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			h := StartHostile(t, HostileConfig{Mode: Silent})
			if _, pkts := rawExchange(t, h, network, "host.example.", dns.TypeA, wait); len(pkts) != 0 {
				t.Errorf("%s: %d packets", network, len(pkts))
			}
			if h.Queries(network) != 1 {
				t.Errorf("%s: %d questions counted", network, h.Queries(network))
			}
		}
	})
	t.Run("spoofs", func(t *testing.T) {
		for _, mode := range []Mode{WrongID, WrongName, WrongType, WrongClass, NotResponse} {
			id, m, _, err := one(t, HostileConfig{Mode: mode}, "udp", dns.TypeA)
			if err != nil || len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != PoisonV4.String() {
				t.Fatalf("%v: %v %v", mode, m, err)
			}
			q := m.Question[0]
			bad := map[Mode]bool{WrongID: m.Id != id, WrongName: q.Name != "host.example.",
				WrongType: q.Qtype != dns.TypeA, WrongClass: q.Qclass != dns.ClassINET, NotResponse: !m.Response}
			if !bad[mode] {
				t.Errorf("%v: reply looks right: %v", mode, m)
			}
			h := StartHostile(t, HostileConfig{Mode: mode, ThenAnswer: true})
			if _, pkts := rawExchange(t, h, "udp", "host.example.", dns.TypeA, wait); len(pkts) != 2 {
				t.Errorf("%v with ThenAnswer: %d packets, want 2", mode, len(pkts))
			}
		}
	})
	t.Run("malformed", func(t *testing.T) {
		for _, mode := range []Mode{CutMidRecord, CutMidRecordTC, GarbageBody, PointerSelf, PointerPair} {
			_, m, p, err := one(t, HostileConfig{Mode: mode}, "udp", dns.TypeA)
			if err == nil {
				t.Errorf("%v: unpacked without error: %v", mode, m)
			}
			if tc := p[2]&0x02 != 0; tc != (mode == CutMidRecordTC) {
				t.Errorf("%v: TC bit %v", mode, tc)
			}
		}
	})
	t.Run("huge", func(t *testing.T) {
		_, m, p, err := one(t, HostileConfig{Mode: Huge}, "udp", dns.TypeA)
		if err != nil || !m.Truncated || len(m.Answer) != 0 {
			t.Errorf("udp: %d bytes, %v %v, want TC only", len(p), m, err)
		}
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			_, m, p, err := one(t, HostileConfig{Mode: Huge}, "tcp", qt)
			if err != nil || len(m.Answer) < 2000 || len(p) > 65535 || 65535-len(p) > 28 {
				t.Errorf("tcp %s: %d records in %d bytes, %v", dns.TypeToString[qt], len(m.Answer), len(p), err)
			}
		}
		// miekg/dns stops at the end of the message and keeps the records that are there.
		_, m, p, err = one(t, HostileConfig{Mode: HugeClaim}, "tcp", dns.TypeA)
		if n := binary.BigEndian.Uint16(p[6:8]); n != 10000 || err != nil || len(m.Answer) >= 10000 {
			t.Errorf("huge claim: ANCOUNT %d, %d records, unpack error %v", n, len(m.Answer), err)
		}
	})
	t.Run("cname", func(t *testing.T) {
		_, m, _, err := one(t, HostileConfig{Mode: CNAMEChain, ChainLength: 3}, "udp", dns.TypeA)
		if err != nil || len(m.Answer) != 4 || m.Answer[3].Header().Name != "hop3.host.example." {
			t.Errorf("chain: %v %v", m, err)
		}
		if got := nextEndless(nextEndless("host.example.")); got != "endless2.host.example." {
			t.Errorf("endless: %q", got)
		}
	})
	t.Run("tcp-stall", func(t *testing.T) {
		h := StartHostile(t, HostileConfig{Mode: TCPStall})
		c, err := net.Dial("tcp", h.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		q := new(dns.Msg)
		q.SetQuestion("host.example.", dns.TypeA)
		p := mustPack(q)
		c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(p))), p...))
		c.SetReadDeadline(time.Now().Add(wait))
		b, err := io.ReadAll(c)
		if len(b) != 2 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read %x then %v, want a length prefix and a stall", b, err)
		}
	})
}
