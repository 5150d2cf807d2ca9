package udp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// budget bounds the bytes in flight across every client of TestRelayStress, charged as the
// kernel may charge a socket buffer (a large datagram's buffer is a power-of-two allocation,
// up to twice its size, plus the skb), so no socket on the path (listener, session sockets
// with the default 208 KiB buffer, echo server, clients) can overflow and loopback loses
// nothing: every datagram must come back, intact and in order.
const budget = 150 << 10

func charge(size int) int64 { return 2*int64(size) + 2048 }

// randomSize is log-uniform over 1..max: as many datagrams under 256 B as between 256 B and
// 64 KiB, the sizes real UDP traffic has, while still reaching the largest.
func randomSize(rng *rand.Rand, max int) int {
	return min(max, int(math.Exp(rng.Float64()*math.Log(float64(max))))+rng.IntN(2))
}

// TestRelayStress sends 100,000 datagrams of random sizes (1 B to 65,507 B, the most an IPv4
// target takes) from 100 client sockets through a wildcard [::] relay to an echo server on
// 127.0.0.1. Every reply must equal its datagram byte for byte (and carry a matching CRC-32),
// arrive in order and from the address and port the client sent to.
func TestRelayStress(t *testing.T) {
	total, clients := 100_000, 100
	if testing.Short() {
		total = 10_000
	}
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			checkLeaks(t)
			e := newEcho(t, "127.0.0.1:0")
			r := startRelay(t, Config{Listen: netip.MustParseAddrPort("[::]:0"), Target: e.addr, Engine: eng})
			dst := netip.AddrPortFrom(netip.IPv6Loopback(), r.Addr().Port())
			var inflight sync.Mutex
			cond := sync.NewCond(&inflight)
			var used int64
			take := func(n int64) {
				inflight.Lock()
				for used+n > budget && used > 0 {
					cond.Wait()
				}
				used += n
				inflight.Unlock()
			}
			give := func(n int64) {
				inflight.Lock()
				used -= n
				inflight.Unlock()
				cond.Broadcast()
			}
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for c := range clients {
				conn := client(t, "udp6")
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- stressClient(conn, dst, c, total/clients, take, give)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			// A reply is counted just after it is sent, so the last ones may trail the clients.
			var st Stats
			eventually(t, 10*time.Second, "datagram counts", func() bool {
				st = r.Stats()
				return st.DatagramsIn == uint64(total) && st.DatagramsOut == uint64(total) && st.SessionsTotal == uint64(clients)
			})
			if st.Drops != [numDrops]uint64{} {
				t.Errorf("drops %v", st.Drops)
			}
		})
	}
}

// stressClient sends n datagrams, one at a time, each stamped with the client, its sequence
// number and a CRC-32 of the rest, and checks every echo.
func stressClient(conn *net.UDPConn, dst netip.AddrPort, id, n int, take, give func(int64)) error {
	rng := rand.New(rand.NewPCG(uint64(id), 15))
	buf := make([]byte, MaxDatagram)
	for seq := range n {
		p := make([]byte, randomSize(rng, 65507))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		if len(p) >= 12 {
			binary.BigEndian.PutUint32(p[0:], uint32(id))
			binary.BigEndian.PutUint32(p[4:], uint32(seq))
			binary.BigEndian.PutUint32(p[8:], crc32.ChecksumIEEE(p[12:]))
		}
		take(charge(len(p)))
		_, err := conn.WriteToUDPAddrPort(p, dst)
		if err != nil {
			give(charge(len(p)))
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		k, from, err := conn.ReadFromUDPAddrPort(buf)
		give(charge(len(p)))
		if err != nil {
			return errors.Join(err, errors.New("client lost a reply"))
		}
		got := buf[:k]
		switch {
		case from != dst:
			return errors.New("reply from " + from.String() + ", want " + dst.String())
		case len(got) >= 12 && binary.BigEndian.Uint32(got[4:]) != uint32(seq):
			return errors.New("reply out of order")
		case len(got) >= 12 && binary.BigEndian.Uint32(got[8:]) != crc32.ChecksumIEEE(got[12:]):
			return errors.New("reply fails its checksum")
		case !bytes.Equal(got, p):
			return errors.New("reply differs from the datagram (merged, split or truncated)")
		}
	}
	return nil
}

// localIPv6 returns a global or unique-local IPv6 address of this host other than ::1, if any.
func localIPv6() (netip.Addr, bool) {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok {
			ip, _ := netip.AddrFromSlice(p.IP)
			if ip.Is6() && !ip.Is4In6() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}

// TestReplySource: a wildcard listener answers every client from the exact address it sent to:
// [::1] and another local IPv6 address on [::]; 127.0.0.1 and 127.0.0.2 on 0.0.0.0.
func TestReplySource(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			checkLeaks(t)
			e := newEcho(t, "127.0.0.1:0")
			cases := []struct{ listen, network string }{{"[::]:0", "udp6"}, {"0.0.0.0:0", "udp4"}}
			for _, tc := range cases {
				r := startRelay(t, Config{Listen: netip.MustParseAddrPort(tc.listen), Target: e.addr, Engine: eng})
				dsts := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
				if tc.network == "udp6" {
					dsts = []netip.Addr{netip.IPv6Loopback()}
					if a, ok := localIPv6(); ok {
						dsts = append(dsts, a)
					} else {
						t.Log("no second local IPv6 address: only [::1] checked")
					}
				}
				for _, a := range dsts {
					c := client(t, tc.network)
					dst := netip.AddrPortFrom(a, r.Addr().Port())
					if _, err := c.WriteToUDPAddrPort([]byte("src?"), dst); err != nil {
						t.Logf("cannot send to %s here: %v", dst, err) // 127.0.0.2 needs an alias off Linux
						continue
					}
					got, from := recv(t, c, 10*time.Second)
					if string(got) != "src?" || from != dst {
						t.Errorf("%s: reply %q from %s, want from %s", tc.listen, got, from, dst)
					}
				}
			}
		})
	}
}

// TestIdleExpiry: a session ends after the idle timeout with no datagram either way; the same
// client then gets a new session.
func TestIdleExpiry(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			checkLeaks(t)
			e := newEcho(t, "127.0.0.1:0")
			r := startRelay(t, Config{Listen: netip.MustParseAddrPort("[::1]:0"), Target: e.addr, Engine: eng,
				IdleTimeout: 50 * time.Millisecond})
			c := client(t, "udp6")
			exchange(t, c, r.Addr(), []byte("a"))
			if r.Active() != 1 {
				t.Fatalf("%d sessions, want 1", r.Active())
			}
			eventually(t, 10*time.Second, "the idle session did not end", func() bool { return r.Active() == 0 })
			exchange(t, c, r.Addr(), []byte("b"))
			if st := r.Stats(); st.SessionsTotal != 2 || st.Active != 1 {
				t.Fatalf("stats %+v: want a second session", st)
			}
		})
	}
}

// TestSessionBound: over MaxSessions (or the shared slots), a new client's datagrams are dropped
// and counted while existing sessions keep working; a slot freed (an idle session ending, a
// TCP flow giving its slot back) is usable again.
func TestSessionBound(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng+"/max-sessions", func(t *testing.T) {
			checkLeaks(t)
			e := newEcho(t, "127.0.0.1:0")
			r := startRelay(t, Config{Listen: netip.MustParseAddrPort("[::1]:0"), Target: e.addr, Engine: eng,
				MaxSessions: 3, IdleTimeout: 300 * time.Millisecond})
			var cs []*net.UDPConn
			for range 3 {
				c := client(t, "udp6")
				exchange(t, c, r.Addr(), []byte("in"))
				cs = append(cs, c)
			}
			late := client(t, "udp6")
			late.WriteToUDPAddrPort([]byte("over"), r.Addr())
			eventually(t, 10*time.Second, "no max_sessions drop", func() bool { return r.Stats().Drops[DropMaxSessions] == 1 })
			for _, c := range cs {
				exchange(t, c, r.Addr(), []byte("still"))
			}
			eventually(t, 10*time.Second, "sessions did not idle out", func() bool { return r.Active() == 0 })
			if got, _ := exchange(t, late, r.Addr(), []byte("now")); string(got) != "now" {
				t.Fatalf("reply %q", got)
			}
		})
		t.Run(eng+"/shared-slots", func(t *testing.T) {
			checkLeaks(t)
			e := newEcho(t, "127.0.0.1:0")
			lim := &slots{max: 3}
			lim.Acquire() // a TCP flow holds one slot
			r := startRelay(t, Config{Listen: netip.MustParseAddrPort("[::1]:0"), Target: e.addr, Engine: eng, Limit: lim})
			for range 2 {
				exchange(t, client(t, "udp6"), r.Addr(), []byte("in"))
			}
			late := client(t, "udp6")
			late.WriteToUDPAddrPort([]byte("over"), r.Addr())
			eventually(t, 10*time.Second, "no max_sessions drop", func() bool { return r.Stats().Drops[DropMaxSessions] == 1 })
			lim.Release() // the TCP flow ends
			exchange(t, late, r.Addr(), []byte("now"))
			if lim.inUse() != 3 {
				t.Fatalf("%d slots in use, want 3", lim.inUse())
			}
			r.Close()
			if lim.inUse() != 0 {
				t.Fatalf("%d slots in use after Close, want 0", lim.inUse())
			}
		})
	}
}

// freePort returns a UDP port on 127.0.0.1 that nothing listens on (just closed).
func freePort(t *testing.T) netip.AddrPort {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return ap
}

// TestUnreachableTarget: ICMP port unreachable from the target (ECONNREFUSED on the session's
// connected socket) is counted as an "unreachable" drop and the session stays, so a target
// that comes back is reached through it.
func TestUnreachableTarget(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			checkLeaks(t)
			target := freePort(t)
			r := startRelay(t, Config{Listen: netip.MustParseAddrPort("[::1]:0"), Target: target, Engine: eng})
			c := client(t, "udp6")
			eventually(t, 10*time.Second, "no unreachable drop", func() bool {
				c.WriteToUDPAddrPort([]byte("anyone?"), r.Addr())
				time.Sleep(10 * time.Millisecond)
				return r.Stats().Drops[DropUnreachable] > 0
			})
			if r.Active() != 1 {
				t.Fatalf("%d sessions, want the session kept", r.Active())
			}
			e := newEcho(t, target.String())
			if got, _ := exchange(t, c, r.Addr(), []byte("back")); string(got) != "back" {
				t.Fatalf("reply %q", got)
			}
			if st := r.Stats(); st.SessionsTotal != 1 {
				t.Fatalf("%d sessions started, want 1", st.SessionsTotal)
			}
			e.close()
		})
	}
}

// TestGarbage: empty, random and oversized datagrams never crash the relay; what fits is
// relayed unchanged, a datagram too big for the IPv4 target is dropped as too_big.
func TestGarbage(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			checkLeaks(t)
			e := newEcho(t, "127.0.0.1:0")
			r := startRelay(t, Config{Listen: netip.MustParseAddrPort("[::1]:0"), Target: e.addr, Engine: eng})
			c := client(t, "udp6")
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range 200 {
				p := make([]byte, rng.IntN(2048))
				if i%50 == 0 {
					p = make([]byte, 65507)
				}
				for j := range p {
					p[j] = byte(rng.Uint32())
				}
				if got, _ := exchange(t, c, r.Addr(), p); !bytes.Equal(got, p) {
					t.Fatalf("datagram %d (%d B) came back as %d B", i, len(p), len(got))
				}
			}
			if _, err := c.WriteToUDPAddrPort(make([]byte, 65527), r.Addr()); err != nil {
				t.Fatal(err) // the largest IPv6 datagram: 7 B more than IPv4 carries
			}
			eventually(t, 10*time.Second, "no too_big drop", func() bool { return r.Stats().Drops[DropTooBig] == 1 })
			if got, _ := exchange(t, c, r.Addr(), nil); len(got) != 0 {
				t.Fatalf("empty datagram came back as %d B", len(got))
			}
			pingOK(t, r)
		})
	}
}

// TestShutdown: draining keeps existing sessions working and drops new clients as "draining";
// Shutdown returns once the sessions idled out, or at its context's end, closing everything.
func TestShutdown(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			checkLeaks(t)
			e := newEcho(t, "127.0.0.1:0")
			for _, wait := range []bool{true, false} {
				idle := time.Hour
				if wait {
					idle = 100 * time.Millisecond
				}
				r := startRelay(t, Config{Listen: netip.MustParseAddrPort("[::1]:0"), Target: e.addr, Engine: eng, IdleTimeout: idle})
				old := client(t, "udp6")
				exchange(t, old, r.Addr(), []byte("before"))
				ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
				if !wait {
					ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
				}
				done := make(chan error, 1)
				go func() { done <- r.Shutdown(ctx) }()
				eventually(t, 10*time.Second, "no draining drop", func() bool {
					client(t, "udp6").WriteToUDPAddrPort([]byte("new"), r.Addr())
					time.Sleep(5 * time.Millisecond)
					return r.Stats().Drops[DropDraining] > 0
				})
				if !wait {
					exchange(t, old, r.Addr(), []byte("during")) // within the 300ms drain
				}
				err := <-done
				cancel()
				if wait && err != nil || !wait && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Shutdown (sessions idle out: %v): %v", wait, err)
				}
				if r.Active() != 0 {
					t.Fatalf("%d sessions after Shutdown", r.Active())
				}
				if err := r.Ping(context.Background()); !errors.Is(err, ErrClosed) {
					t.Fatalf("ping after Shutdown: %v", err)
				}
			}
		})
	}
}
