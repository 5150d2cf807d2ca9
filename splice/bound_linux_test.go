//go:build linux

package splice

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"
)

// serveInbound starts an inbound port on e in front of app and returns its address.
func serveInbound(t *testing.T, e *SpliceEngine, app net.Listener, res *results) string {
	t.Helper()
	addr, err := e.ServeInbound(Inbound{
		Listen: netip.MustParseAddrPort("[::1]:0"), Target: netip.MustParseAddrPort(app.Addr().String()),
		Front: &admitter{res: res},
	})
	if err != nil {
		t.Fatal(err)
	}
	return addr.String()
}

// acceptEach listens on network ("tcp4", "tcp") at 127.0.0.1:0 and, until the test ends, calls
// each from its accept loop for every connection, which each then owns; each must not block.
// The cleanup closes the listener and waits for the loop.
func acceptEach(t *testing.T, network string, each func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			each(c)
		}
	})
	return ln
}

// serveApp runs handle for every connection app accepts, until the test ends.
func serveApp(t *testing.T, handle func(*net.TCPConn)) net.Listener {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after acceptEach's cleanup: no handler starts once it has run
	return acceptEach(t, "tcp4", func(c net.Conn) {
		wg.Go(func() { defer c.Close(); handle(c.(*net.TCPConn)) })
	})
}

// TestInboundHangUpWithBytesInFlight is the crash of issue 11: inbound flows past the pipe pool,
// slow readers, then every client hangs up with bytes still in the pipes. Flows accepted by the
// loops themselves had no loop pointer, so handing a discarded pipe's replacement to a waiting
// direction posted to a nil loop and killed the process.
func TestInboundHangUpWithBytesInFlight(t *testing.T) {
	checkLeaks(t)
	const pipes, clients = 4, 16
	e, err := NewSplice(Options{Loops: 2, MaxPipes: pipes, PipeSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	app := serveApp(t, func(c *net.TCPConn) { sendStream(c, 1, 64<<20) })
	res := newResults(clients)
	addr := serveInbound(t, e, app, res)
	var cs []net.Conn
	for range clients {
		c, err := net.Dial("tcp6", addr)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 4<<10)); err != nil {
			t.Fatal(err)
		}
	}
	// Every pipe is lent and holds bytes the slow clients have not read.
	waitStats(t, e, "the pool exhausted", func(s Stats) bool { return s.PipesInUse == pipes })
	for _, c := range cs {
		c.Close() // unread bytes: the client's close is a reset
	}
	for range clients {
		if r := res.wait(t); r.Err == nil {
			t.Errorf("a flow whose client hung up mid-stream ended cleanly: %+v", r)
		}
	}
	if err := e.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitStats(t, e, "every pipe back", func(s Stats) bool { return s.PipesInUse == 0 && s.Active == 0 })
}

// TestPoolStuckReaders: at 1x, 2x and 4x the pipe pool, clients that never read hold every
// pipe with bytes in flight; a new client must still be served in full (it copies), and when the
// stuck clients hang up with bytes in flight, every pipe and buffer comes back. While directions
// queued for a pipe, one stuck reader per pipe froze every other flow of the pod.
func TestPoolStuckReaders(t *testing.T) {
	const pipes = 4
	for _, eng := range engines(t) {
		for _, mult := range []int{1, 2, 4} {
			t.Run(eng.name+"/"+strconv.Itoa(mult)+"x", func(t *testing.T) {
				checkLeaks(t)
				e := eng.new(t, Options{MaxPipes: pipes, PipeSize: 64 << 10})
				// The app streams 64 MiB to a client that says "S", 1 MiB to one that says "P".
				app := serveApp(t, func(c *net.TCPConn) {
					cmd := make([]byte, 1)
					if _, err := io.ReadFull(c, cmd); err != nil {
						return
					}
					size := int64(1 << 20)
					if cmd[0] == 'S' {
						size = 64 << 20
					}
					sendStream(c, uint64(cmd[0]), size)
				})
				stuckN := pipes * mult
				const maxTries = 5
				res := newResults(stuckN + maxTries)
				addr := frontFor(t, e, app, res)
				var stuck []net.Conn
				for range stuckN {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					stuck = append(stuck, c)
					c.Write([]byte("S"))
				}
				if _, ok := e.(*SpliceEngine); ok {
					waitStats(t, e, "every pipe lent", func(s Stats) bool { return s.PipesInUse == pipes })
				}
				// A stuck flow's pipe can drain for a moment into a send buffer that autotuning
				// grew, and the new client then gets that pipe: new clients come until one finds
				// the pool empty (each must be served in full either way).
				for try := 0; ; try++ {
					p, err := net.Dial("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					p.SetDeadline(time.Now().Add(20 * time.Second))
					p.Write([]byte("P"))
					if sum, n, err := readSum(p); err != nil || n != 1<<20 || sum != streamSum('P', 1<<20) {
						t.Fatalf("a new client behind %d stuck readers got %d bytes (err %v, hash match %v): %+v",
							stuckN, n, err, sum == streamSum('P', 1<<20), stats(e))
					}
					p.Close()
					if r := res.wait(t); r.Err != nil || r.Down != 1<<20 {
						t.Errorf("the new client's flow: %+v", r)
					}
					if _, ok := e.(*SpliceEngine); !ok || stats(e).PoolExhausted > 0 || try == maxTries-1 {
						break
					}
				}
				st := stats(e)
				for _, c := range stuck {
					c.Close() // unread bytes make the close a reset
				}
				for range stuckN {
					if r := res.wait(t); r.Err == nil {
						t.Errorf("a stuck flow whose client hung up mid-stream ended cleanly: %+v", r)
					}
				}
				if se, ok := e.(*SpliceEngine); ok {
					waitStats(t, e, "every pipe and buffer back", func(s Stats) bool {
						return s.Active == 0 && s.PipesInUse == 0 && s.CopyBuffers == 0 && s.PipesPooled <= pipes
					})
					if st.PoolExhausted == 0 {
						t.Errorf("the pool was never exhausted: %+v", st)
					}
					if err := se.Ping(t.Context()); err != nil {
						t.Fatal(err)
					}
				}
				t.Logf("%d stuck readers + 1 served: %+v", stuckN, st)
			})
		}
	}
}

// TestPoolBothDirections: an app that writes its whole answer before it reads the request, and
// clients that send a large request while they read. With one pipe, the request direction takes
// it and keeps it (the app is not reading), so the answer direction must not wait for it: it
// would wait for ever, and the flow with it.
func TestPoolBothDirections(t *testing.T) {
	const size = 8 << 20
	for _, eng := range engines(t) {
		for _, flows := range []int{1, 2, 4} {
			t.Run(eng.name+"/"+strconv.Itoa(flows), func(t *testing.T) {
				checkLeaks(t)
				e := eng.new(t, Options{MaxPipes: 1, PipeSize: 64 << 10})
				app := serveApp(t, func(c *net.TCPConn) {
					time.Sleep(100 * time.Millisecond) // let the request take the pipe first
					if sendStream(c, 8, size) != nil {
						return
					}
					c.CloseWrite()
					if sum, n, err := readSum(c); err != nil || n != size || sum != streamSum(9, size) {
						c.SetLinger(0) // the client sees a reset, not an answer
					}
				})
				res := newResults(flows)
				addr := frontFor(t, e, app, res)
				errs := make(chan error, flows)
				for range flows {
					go func() { errs <- bothWays(addr, size) }()
				}
				for range flows {
					select {
					case err := <-errs:
						if err != nil {
							t.Error(err)
						}
					case <-time.After(60 * time.Second):
						t.Fatalf("flows stuck with the pool exhausted: %+v", stats(e))
					}
				}
				for range flows {
					if r := res.wait(t); r.Err != nil || r.ConnectErr != nil {
						t.Errorf("flow ended with %v / %v", r.Err, r.ConnectErr)
					}
				}
				t.Logf("%d flows x %d MiB each way: %+v", flows, size>>20, stats(e))
			})
		}
	}
}

// bothWays sends stream 9 to addr while reading stream 8 from it, and checks the answer.
func bothWays(addr string, size int64) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(90 * time.Second))
	sent := make(chan error, 1)
	go func() {
		err := sendStream(c, 9, size)
		c.(*net.TCPConn).CloseWrite()
		sent <- err
	}()
	sum, n, err := readSum(c)
	if err := cmp.Or(<-sent, err); err != nil {
		return err
	}
	if n != size || sum != streamSum(8, size) {
		return fmt.Errorf("answer: got %d of %d bytes, hash match %v", n, size, sum == streamSum(8, size))
	}
	return nil
}

// frontFor puts a port in front of app on e: an inbound port of the splice engine's own, or, for
// the goroutine engine (which serves no ports), a loopback listener whose connections are Relayed.
func frontFor(t *testing.T, e Engine, app net.Listener, res *results) string {
	if s, ok := e.(*SpliceEngine); ok {
		return serveInbound(t, s, app, res)
	}
	return relayVia(t, e, app, res)
}

// relayVia accepts clients on a loopback port and relays each to app on e (the Relay path,
// for the goroutine engine, which serves no inbound ports itself).
func relayVia(t *testing.T, e Engine, app net.Listener, res *results) string {
	t.Helper()
	ln := acceptEach(t, "tcp", func(c net.Conn) {
		up, err := net.Dial("tcp", app.Addr().String())
		if err != nil {
			c.Close()
			return
		}
		e.Relay(Flow{Client: c, Upstream: up, ClientFD: -1, UpstreamFD: -1, Owner: res})
	})
	return ln.Addr().String()
}

func stats(e Engine) Stats {
	if s, ok := e.(*SpliceEngine); ok {
		return s.Stats()
	}
	return Stats{Active: e.Active()}
}

// BenchmarkBulkPastPool moves 16 MiB one way per op through a flow on the splice path (a free
// pipe) and on the copy path (the pool's only pipe held by a flow whose client does not read).
func BenchmarkBulkPastPool(b *testing.B) {
	const size = 16 << 20
	for _, path := range []string{"splice", "copy"} {
		b.Run(path, func(b *testing.B) {
			e, err := NewSplice(Options{MaxPipes: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			r := newRig(b)
			if path == "copy" {
				stuck, _ := r.relayOne(e, true)
				go sendStream(stuck.server, 1, 64<<20) // fills the sockets, then keeps the pipe
				for e.Stats().PipesInUse == 0 {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond)
			}
			c, _ := r.relayOne(e, true)
			buf := make([]byte, 256<<10)
			b.SetBytes(size)
			b.ResetTimer()
			for b.Loop() {
				go sendStream(c.server, 2, size)
				for got := 0; got < size; {
					n, err := c.client.Read(buf)
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
			b.StopTimer()
			if st := e.Stats(); path == "copy" && st.PoolExhausted == 0 {
				b.Fatalf("the copy path never ran: %+v", st)
			}
		})
	}
}
