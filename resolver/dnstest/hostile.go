package dnstest

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Mode is the one way a Hostile server misbehaves. Every mode applies to every question;
// where a mode carries addresses, A questions get IPv4 ones and AAAA questions IPv6 ones
// (other types get an empty NOERROR).
type Mode int

const (
	// Silent reads every question and never answers; over TCP it accepts, reads, never writes.
	Silent Mode = iota
	// Answer is a well-formed answer: one address per family with HostileConfig.TTL (TTL 0,
	// 2^31 and 2^32-1 included). The baseline the other modes spoil.
	Answer
	// ServFail answers SERVFAIL with no records.
	ServFail
	// WrongID is the good reply with the query's ID plus one, carrying the Poison addresses.
	WrongID
	// WrongName asks back a different name (the records still name the asked one, with the
	// Poison addresses, so that only a question check stops them).
	WrongName
	// WrongType asks back the other address type (A for AAAA and back); records as WrongName.
	WrongType
	// WrongClass asks back class CHAOS; records as WrongName.
	WrongClass
	// NotResponse is the good reply with the QR bit clear (it looks like a query), Poison
	// addresses.
	NotResponse
	// Truncated sets the TC bit over UDP with no records; TCP gets the good answer.
	Truncated
	// CutMidRecord is the good answer cut off halfway through its record's RDATA, TC clear.
	CutMidRecord
	// CutMidRecordTC is CutMidRecord with the TC bit set over UDP (a server that truncates
	// at the byte, not the record; RFC 2181 §9 says to retry over TCP); TCP gets the good
	// answer.
	CutMidRecordTC
	// Garbage is 12 to 512 random bytes.
	Garbage
	// GarbageBody is a header and question matching the query, one answer claimed, then
	// random bytes where the record should be.
	GarbageBody
	// PointerSelf: the answer record's owner name is a compression pointer to itself.
	PointerSelf
	// PointerPair: the answer record's owner name points to its RDATA, a name that points
	// back to the owner.
	PointerPair
	// CNAMELoop answers name CNAME loop.name and loop.name CNAME name: a→b→a.
	CNAMELoop
	// CNAMEChain answers HostileConfig.ChainLength CNAMEs, name → hop1.name → … →
	// hopN.name, and the address at the end, all in one reply.
	CNAMEChain
	// CNAMEEndless answers every question with a single CNAME to a name never asked before
	// (endless1.name, endless2.name, …), so the chain only ends where the client stops.
	CNAMEEndless
	// Huge answers HostileConfig.Records addresses. A DNS message is at most 65,535 bytes,
	// so one reply holds at most about 4,090 A or 2,340 AAAA records (zero Records means as
	// many as fit); over UDP, where they cannot fit either, the reply is TC only.
	Huge
	// HugeClaim is Huge over TCP with a header claiming 10,000 answers: more than any
	// 64 KiB message can carry, so the count is a lie the parser must survive.
	HugeClaim
	// TCPSilent answers UDP with TC only; TCP accepts, reads the question, never writes.
	TCPSilent
	// TCPStall answers UDP with TC only; TCP writes a 2-byte length prefix (512), then stalls.
	TCPStall
)

var modeNames = [...]string{"silent", "answer", "servfail", "wrong-id", "wrong-name", "wrong-type",
	"wrong-class", "not-response", "truncated", "cut-mid-record", "cut-mid-record-tc", "garbage",
	"garbage-body", "pointer-self", "pointer-pair", "cname-loop", "cname-chain", "cname-endless",
	"huge", "huge-claim", "tcp-silent", "tcp-stall"}

func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Poison addresses are what the spoofing modes (WrongID, WrongName, WrongType, WrongClass,
// NotResponse) put in their records: a resolver that hands them out, or caches them, was
// fooled. They are loopback addresses (the IPv6 one IPv4-mapped) where nothing listens, so
// that a fooled proxy's connection stays on the machine and is refused.
var (
	PoisonV4 = netip.MustParseAddr("127.66.66.66")
	PoisonV6 = netip.MustParseAddr("::ffff:127.66.66.66")
)

// HostileConfig chooses a Hostile server's behaviour; the zero value is Silent.
type HostileConfig struct {
	Mode Mode
	// TTL is the TTL of every record sent, zero included.
	TTL uint32
	// V4 and V6 are the addresses answered (the first of them for Huge, which counts up);
	// if invalid, 192.0.2.1 and 2001:db8::1.
	V4, V6 netip.Addr
	// ChainLength is the number of CNAMEs in a CNAMEChain reply; if zero, 16.
	ChainLength int
	// Records is the number of addresses in a Huge reply; if zero, as many as fit.
	Records int
	// ThenAnswer makes the spoofing and Garbage modes send the good answer right after the
	// bad packet, like a forgery racing the real reply.
	ThenAnswer bool
	// Seed seeds the random bytes of Garbage and GarbageBody.
	Seed uint64
}

// Hostile is a raw DNS server on UDP and TCP (one port of 127.0.0.1) that misbehaves in
// one chosen way: packets are built by hand or patched after packing, because miekg/dns
// refuses to pack most of them. It closes at the end of the test.
type Hostile struct {
	cfg  HostileConfig
	addr netip.AddrPort
	pc   net.PacketConn
	ln   net.Listener
	wg   sync.WaitGroup
	quit chan struct{}
	once sync.Once

	udpQueries, tcpQueries atomic.Int64

	mu    sync.Mutex
	rng   *rand.Rand
	conns map[net.Conn]struct{}
}

// StartHostile serves cfg's misbehaviour on 127.0.0.1 with a random port.
func StartHostile(t testing.TB, cfg HostileConfig) *Hostile {
	t.Helper()
	if !cfg.V4.IsValid() {
		cfg.V4 = netip.MustParseAddr("192.0.2.1")
	}
	if !cfg.V6.IsValid() {
		cfg.V6 = netip.MustParseAddr("2001:db8::1")
	}
	if cfg.ChainLength == 0 {
		cfg.ChainLength = 16
	}
	h := &Hostile{cfg: cfg, quit: make(chan struct{}), conns: make(map[net.Conn]struct{}),
		rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed))}
	h.pc, h.ln = listenPair(t, "127.0.0.1")
	h.addr = netip.MustParseAddrPort(h.pc.LocalAddr().String())
	h.wg.Add(2)
	go h.serveUDP()
	go h.serveTCP()
	t.Cleanup(h.Close)
	return h
}

// Addr is the address to send queries to (UDP and TCP).
func (h *Hostile) Addr() netip.AddrPort { return h.addr }

// Queries returns how many questions arrived over "udp" or "tcp" ("" for both).
func (h *Hostile) Queries(transport string) int {
	switch transport {
	case "udp":
		return int(h.udpQueries.Load())
	case "tcp":
		return int(h.tcpQueries.Load())
	}
	return int(h.udpQueries.Load() + h.tcpQueries.Load())
}

// Close stops the server and drops its TCP connections; it is idempotent and registered
// with t.Cleanup by StartHostile.
func (h *Hostile) Close() {
	h.once.Do(func() {
		close(h.quit)
		h.pc.Close()
		h.ln.Close()
		h.mu.Lock()
		for c := range h.conns {
			c.Close()
		}
		h.mu.Unlock()
		h.wg.Wait()
	})
}

func (h *Hostile) serveUDP() {
	defer h.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := h.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		q := new(dns.Msg)
		if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
			continue
		}
		h.udpQueries.Add(1)
		for _, p := range h.replies(q, "udp") {
			h.pc.WriteTo(p, from)
		}
	}
}

func (h *Hostile) serveTCP() {
	defer h.wg.Done()
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		h.conns[c] = struct{}{}
		h.mu.Unlock()
		h.wg.Add(1)
		go h.serveConn(c)
	}
}

// serveConn answers length-prefixed questions until the client or the server closes.
func (h *Hostile) serveConn(c net.Conn) {
	defer h.wg.Done()
	defer func() {
		h.mu.Lock()
		delete(h.conns, c)
		h.mu.Unlock()
		c.Close()
	}()
	for {
		var n uint16
		if binary.Read(c, binary.BigEndian, &n) != nil {
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		q := new(dns.Msg)
		if q.Unpack(buf) != nil || len(q.Question) != 1 {
			return
		}
		h.tcpQueries.Add(1)
		switch h.cfg.Mode {
		case Silent, TCPSilent:
			continue
		case TCPStall:
			c.Write([]byte{0x02, 0x00})
			<-h.quit
			return
		}
		for _, p := range h.replies(q, "tcp") {
			if len(p) > 65535 {
				continue
			}
			if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(p)))); err != nil {
				return
			}
			if _, err := c.Write(p); err != nil {
				return
			}
		}
	}
}

// replies builds the packets that answer q over transport, in sending order.
func (h *Hostile) replies(q *dns.Msg, transport string) [][]byte {
	udp := transport == "udp"
	switch h.cfg.Mode {
	case Silent:
		return nil
	case ServFail:
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeServerFailure)
		return [][]byte{mustPack(m)}
	case WrongID, WrongName, WrongType, WrongClass, NotResponse:
		return h.spoof(q, transport)
	case Garbage:
		return h.then(q, transport, h.random(12+h.intN(501)))
	case GarbageBody:
		return [][]byte{h.garbageBody(q)}
	case Truncated, TCPSilent, TCPStall:
		if udp {
			return [][]byte{tcOnly(q)}
		}
	case CutMidRecord, CutMidRecordTC:
		if udp {
			return [][]byte{cutMidRecord(h.good(q, transport), h.cfg.Mode == CutMidRecordTC)}
		}
	case PointerSelf, PointerPair:
		return [][]byte{pointerLoop(q, h.cfg.Mode == PointerPair, h.cfg.TTL)}
	case HugeClaim:
		p := h.good(q, transport)
		if !udp && len(p) >= 12 {
			binary.BigEndian.PutUint16(p[6:8], 10000) // ANCOUNT
		}
		return [][]byte{p}
	}
	return [][]byte{h.good(q, transport)}
}

// good is the mode's correct answer (Answer, CNAME modes, Huge), TC only when it exceeds
// the UDP size the query advertised.
func (h *Hostile) good(q *dns.Msg, transport string) []byte {
	m := reply(q)
	m.Compress = true
	name, qt := q.Question[0].Name, q.Question[0].Qtype
	switch h.cfg.Mode {
	case CNAMELoop:
		loop := "loop." + name
		m.Answer = append(m.Answer, h.cname(name, loop), h.cname(loop, name))
		return h.fit(m, q, transport)
	case CNAMEChain:
		cur := name
		for i := 1; i <= h.cfg.ChainLength; i++ {
			next := fmt.Sprintf("hop%d.%s", i, name)
			m.Answer = append(m.Answer, h.cname(cur, next))
			cur = next
		}
		m.Answer = append(m.Answer, h.addrs(cur, qt, h.cfg.V4, h.cfg.V6, 1)...)
		return h.fit(m, q, transport)
	case CNAMEEndless:
		m.Answer = append(m.Answer, h.cname(name, nextEndless(name)))
		return h.fit(m, q, transport)
	case Huge, HugeClaim:
		m.Answer = h.addrs(name, qt, h.cfg.V4, h.cfg.V6, h.hugeCount(name, qt))
		return h.fit(m, q, transport)
	}
	m.Answer = h.addrs(name, qt, h.cfg.V4, h.cfg.V6, 1)
	return h.fit(m, q, transport)
}

// spoof is the poisoned reply with one field wrong, then (ThenAnswer) the good one.
func (h *Hostile) spoof(q *dns.Msg, transport string) [][]byte {
	m := reply(q)
	name, qt := q.Question[0].Name, q.Question[0].Qtype
	m.Answer = h.addrs(name, qt, PoisonV4, PoisonV6, 1)
	switch h.cfg.Mode {
	case WrongID:
		m.Id++
	case WrongName:
		m.Question[0].Name = "not-" + name
	case WrongType:
		m.Question[0].Qtype = dns.TypeA
		if qt == dns.TypeA {
			m.Question[0].Qtype = dns.TypeAAAA
		}
	case WrongClass:
		m.Question[0].Qclass = dns.ClassCHAOS
	case NotResponse:
		m.Response = false
	}
	return h.then(q, transport, mustPack(m))
}

// then appends the good answer to bad when ThenAnswer is set.
func (h *Hostile) then(q *dns.Msg, transport string, bad []byte) [][]byte {
	if !h.cfg.ThenAnswer {
		return [][]byte{bad}
	}
	return [][]byte{bad, h.good(q, transport)}
}

func (h *Hostile) garbageBody(q *dns.Msg) []byte {
	m := reply(q)
	p := mustPack(m)
	binary.BigEndian.PutUint16(p[6:8], 1) // ANCOUNT 1, then noise
	return append(p, h.random(16+h.intN(200))...)
}

func (h *Hostile) addrs(owner string, qtype uint16, v4, v6 netip.Addr, n int) []dns.RR {
	out := make([]dns.RR, 0, n)
	hdr := dns.RR_Header{Name: owner, Rrtype: qtype, Class: dns.ClassINET, Ttl: h.cfg.TTL}
	for range n {
		switch qtype {
		case dns.TypeA:
			out = append(out, &dns.A{Hdr: hdr, A: v4.AsSlice()})
			v4 = v4.Next()
		case dns.TypeAAAA:
			out = append(out, &dns.AAAA{Hdr: hdr, AAAA: v6.AsSlice()})
			v6 = v6.Next()
		default:
			return out
		}
	}
	return out
}

func (h *Hostile) cname(owner, target string) dns.RR {
	return &dns.CNAME{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeCNAME, Class: dns.ClassINET,
		Ttl: h.cfg.TTL}, Target: target}
}

// hugeCount is Records, or the most records of qtype one 65,535-byte message holds, each
// owner compressed to a 2-byte pointer: 12 header bytes, the question, 2+10+RDLENGTH a record.
func (h *Hostile) hugeCount(name string, qtype uint16) int {
	if h.cfg.Records > 0 {
		return h.cfg.Records
	}
	rdlen := 4
	if qtype == dns.TypeAAAA {
		rdlen = 16
	}
	return (65535 - 12 - (len(name) + 1) - 4) / (12 + rdlen)
}

// fit packs m, or the TC-only reply when m exceeds what q said it can receive over UDP.
func (h *Hostile) fit(m, q *dns.Msg, transport string) []byte {
	p := mustPack(m)
	limit := dns.MinMsgSize
	if opt := q.IsEdns0(); opt != nil {
		limit = max(limit, int(opt.UDPSize()))
	}
	if transport == "udp" && len(p) > limit {
		return tcOnly(q)
	}
	return p
}

func (h *Hostile) random(n int) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(h.rng.Uint32())
	}
	return b
}

func (h *Hostile) intN(n int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rng.IntN(n)
}

// reply is an empty authoritative NOERROR reply to q (ID, question, RD copied).
func reply(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative, m.RecursionAvailable = true, true
	return m
}

func tcOnly(q *dns.Msg) []byte {
	m := reply(q)
	m.Truncated = true
	return mustPack(m)
}

// cutMidRecord cuts a packed reply with at least one answer halfway through the first
// answer's RDATA, optionally setting the TC bit.
func cutMidRecord(p []byte, tc bool) []byte {
	m := new(dns.Msg)
	if m.Unpack(p) != nil || len(m.Answer) == 0 || len(m.Ns)+len(m.Extra) > 0 {
		return p
	}
	rdlen := int(m.Answer[0].Header().Rdlength)
	m.Answer = m.Answer[:1] // packed alone, the first record's RDATA ends the message
	one := mustPack(m)
	cut := one[:len(one)-(rdlen+1)/2]
	if tc {
		cut[2] |= 0x02 // TC is bit 1 of the third header byte
	}
	return cut
}

// pointerLoop builds, by hand, a reply to q whose one answer record has an owner name
// that is a compression pointer to itself, or (pair) to the record's RDATA, a name that
// points back to the owner.
func pointerLoop(q *dns.Msg, pair bool, ttl uint32) []byte {
	p := mustPack(reply(q))
	binary.BigEndian.PutUint16(p[6:8], 1) // ANCOUNT
	owner := len(p)
	rrtype, rdata := dns.TypeA, []byte{192, 0, 2, 1}
	target := owner // the owner points to itself
	if pair {
		// owner -> RDATA (after the 2-byte owner and 10 bytes of type, class, TTL, RDLENGTH)
		// -> owner.
		rrtype, rdata = dns.TypeCNAME, []byte{0xC0 | byte(owner>>8), byte(owner)}
		target = owner + 2 + 10
	}
	p = append(p, 0xC0|byte(target>>8), byte(target))
	p = binary.BigEndian.AppendUint16(p, rrtype)
	p = binary.BigEndian.AppendUint16(p, dns.ClassINET)
	p = binary.BigEndian.AppendUint32(p, ttl)
	p = binary.BigEndian.AppendUint16(p, uint16(len(rdata)))
	return append(p, rdata...)
}

// nextEndless is the next name of a CNAMEEndless chain: endless<n+1> in place of a first
// label endless<n>, else endless1 prepended, so names keep one length.
func nextEndless(name string) string {
	first, rest, _ := strings.Cut(name, ".")
	var n int
	if _, err := fmt.Sscanf(first, "endless%d", &n); err == nil {
		return fmt.Sprintf("endless%d.%s", n+1, rest)
	}
	return "endless1." + name
}

func mustPack(m *dns.Msg) []byte {
	p, err := m.Pack()
	if err != nil {
		panic(fmt.Sprintf("dnstest: pack: %v", err))
	}
	return p
}
