package udp

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRelay measures request/response datagrams per second through a relay ([::1] to an
// echo server on 127.0.0.1) against the same clients talking to the echo server directly, and
// through socat (UDP6-LISTEN with fork, a process per client) where it is installed: each
// session keeps one datagram in flight, b.N round trips are shared by the sessions. dgram/s
// counts both directions (what the relay moves); p50-us and p99-us are the round trips'
// request/response latency; a datagram lost on the way is sent again.
func BenchmarkRelay(b *testing.B) {
	for _, size := range []int{64, 1400} {
		for _, sessions := range []int{1, 64} {
			for _, eng := range append([]string{"direct", "socat"}, engines()...) {
				b.Run(fmt.Sprintf("%dB/%dsessions/%s", size, sessions, eng), func(b *testing.B) {
					benchRelay(b, eng, size, sessions)
				})
			}
		}
	}
}

func benchRelay(b *testing.B, eng string, size, sessions int) {
	e := newEcho(b, "127.0.0.1:0")
	dst, network := e.addr, "udp4"
	var r *Relay
	switch eng {
	case "direct":
	case "socat":
		var ok bool
		if dst, ok = startSocat(b, e.addr); !ok {
			b.Skip("socat is not installed")
		}
		network = "udp6"
	default:
		r = startRelay(b, Config{Listen: netip.MustParseAddrPort("[::1]:0"), Target: e.addr, Engine: eng})
		dst, network = r.Addr(), "udp6"
	}
	conns := make([]*net.UDPConn, sessions)
	for i := range conns {
		conns[i] = client(b, network)
		warm(b, conns[i], dst)
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var lost atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(2 * size))
	b.ReportAllocs()
	var calls0 uint64
	if r != nil {
		calls0 = syscalls(r)
	}
	b.ResetTimer()
	start := time.Now()
	rtts := make([][]time.Duration, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, buf := make([]byte, size), make([]byte, MaxDatagram)
			rtt := make([]time.Duration, 0, b.N/len(conns)+1)
			for left.Add(-1) >= 0 {
				for {
					t0 := time.Now()
					c.WriteToUDPAddrPort(p, dst)
					c.SetReadDeadline(t0.Add(200 * time.Millisecond))
					if _, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
						rtt = append(rtt, time.Since(t0))
						break
					}
					lost.Add(1)
				}
			}
			rtts[i] = rtt
		}()
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Concat(rtts...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-us")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-us")
	}
	b.ReportMetric(float64(2*b.N)/time.Since(start).Seconds(), "dgram/s")
	b.ReportMetric(float64(lost.Load()), "lost")
	if r != nil && eng == "splice" {
		// The epoll loop's epoll_wait, recvmmsg and sendmmsg calls per relayed datagram.
		b.ReportMetric(float64(syscalls(r)-calls0)/float64(2*b.N), "syscalls/dgram")
	}
}

// warm gets one echo through dst, resending: socat may lose a new client's first datagram while
// it forks.
func warm(b *testing.B, c *net.UDPConn, dst netip.AddrPort) {
	buf := make([]byte, 16)
	for range 20 {
		c.WriteToUDPAddrPort([]byte("warm"), dst)
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
			return
		}
	}
	b.Fatal("no echo after 20 tries")
}
