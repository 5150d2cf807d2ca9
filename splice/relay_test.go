package splice

import (
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// Let the runtime open its netpoller fds before any test counts fds.
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	os.Exit(m.Run())
}

// pump runs the four halves of a bidirectional transfer: client and server each send a stream
// and close their write side, and each checks the other's stream by hash.
func pump(t *testing.T, c conns, upSeed, downSeed uint64, upSize, downSize int64, upSum, downSum [32]byte) {
	t.Helper()
	var wg sync.WaitGroup
	send := func(w *net.TCPConn, seed uint64, size int64, who string) {
		defer wg.Done()
		if err := sendStream(w, seed, size); err != nil {
			t.Errorf("%s send: %v", who, err)
			return
		}
		if err := w.CloseWrite(); err != nil {
			t.Errorf("%s CloseWrite: %v", who, err)
		}
	}
	recv := func(r *net.TCPConn, size int64, want [32]byte, who string) {
		defer wg.Done()
		got, n, err := readSum(r)
		if err != nil || n != size || got != want {
			t.Errorf("%s received %d bytes (want %d), err %v, hash match %v", who, n, size, err, got == want)
		}
	}
	wg.Add(4)
	go send(c.client, upSeed, upSize, "client")
	go send(c.server, downSeed, downSize, "server")
	go recv(c.server, upSize, upSum, "server")
	go recv(c.client, downSize, downSum, "client")
	wg.Wait()
}

func TestRelayBulk1GiB(t *testing.T) {
	const size = 1 << 30
	want := streamSum(7, size)
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			e := eng.new(t, Options{})
			c, res := r.relayOne(e, eng.fds)
			start := time.Now()
			pump(t, c, 7, 7, size, size, want, want)
			got := res.wait(t)
			t.Logf("%s: 1 GiB each way in %v", eng.name, time.Since(start))
			if got.Err != nil || got.Up != size || got.Down != size {
				t.Errorf("result: up %d down %d err %v", got.Up, got.Down, got.Err)
			}
			if s, ok := e.(interface{ Stats() Stats }); ok && eng.name == "splice" {
				st := s.Stats()
				t.Logf("stats after: %+v", st)
				if st.SpliceCalls == 0 {
					t.Error("splice engine moved 2 GiB without a splice(2) call")
				}
				if st.PipesInUse != 0 || st.Active != 0 {
					t.Errorf("after the flow: %+v, want no pipe in use and no flow", st)
				}
			}
		})
	}
}

func TestRelayConcurrent(t *testing.T) {
	cases := []struct {
		name     string
		flows    int
		maxPipes int
	}{
		{"500-flows", 500, 0},
		{"pool-of-2", 40, 2}, // directions often queue for pipes (splice engine)
	}
	for _, eng := range engines(t) {
		for _, tc := range cases {
			t.Run(eng.name+"/"+tc.name, func(t *testing.T) {
				checkLeaks(t)
				r := newRig(t)
				res := newResults(tc.flows)
				e := eng.new(t, Options{MaxPipes: tc.maxPipes})
				rng := rand.New(rand.NewPCG(uint64(tc.flows), 1))
				// Log-uniform sizes from 0 B to 8 MiB: most flows small, some large.
				size := func() int64 {
					if rng.IntN(20) == 0 {
						return 0
					}
					return int64(math.Exp2(rng.Float64()*23)) - 1
				}
				var wg sync.WaitGroup
				var total int64
				for i := 0; i < tc.flows; i++ {
					f, c := r.flow(eng.fds && i%2 == 0)
					f.Owner = res
					if err := e.Relay(f); err != nil {
						t.Fatal(err)
					}
					up, down := size(), size()
					total += up + down
					upSeed, downSeed := uint64(2*i+100), uint64(2*i+101)
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer c.close()
						pump(t, c, upSeed, downSeed, up, down, streamSum(upSeed, up), streamSum(downSeed, down))
					}()
				}
				wg.Wait()
				for i := 0; i < tc.flows; i++ {
					if got := res.wait(t); got.Err != nil || got.ConnectErr != nil {
						t.Errorf("flow ended with %v / %v", got.Err, got.ConnectErr)
					}
				}
				t.Logf("%d flows, %d MiB relayed", tc.flows, total>>20)
				if s, ok := e.(*SpliceEngine); ok {
					st := s.Stats()
					t.Logf("stats: %+v", st)
					o := Options{MaxPipes: tc.maxPipes}
					if st.PipesInUse+st.PipesPooled > o.maxPipes() {
						t.Errorf("%d pipes exist, bound is %d", st.PipesInUse+st.PipesPooled, o.maxPipes())
					}
				}
			})
		}
	}
}

func TestRelayHalfClose(t *testing.T) {
	request := []byte("GET / HTTP/1.0\r\n\r\n")
	const replySize = 3 << 20
	want := streamSum(3, replySize)
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			e := eng.new(t, Options{})
			c, res := r.relayOne(e, eng.fds)
			go func() {
				// The server answers only after it has seen the client's EOF.
				got, err := io.ReadAll(c.server)
				if err != nil || string(got) != string(request) {
					t.Errorf("server read %q, %v", got, err)
				}
				if err := sendStream(c.server, 3, replySize); err != nil {
					t.Errorf("server send: %v", err)
				}
				c.server.Close()
			}()
			if _, err := c.client.Write(request); err != nil {
				t.Fatal(err)
			}
			if err := c.client.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			sum, n, err := readSum(c.client)
			if err != nil || n != replySize || sum != want {
				t.Fatalf("client got %d bytes (want %d), err %v, hash match %v", n, replySize, err, sum == want)
			}
			got := res.wait(t)
			if got.Err != nil || got.Up != int64(len(request)) || got.Down != replySize {
				t.Errorf("result: up %d down %d err %v", got.Up, got.Down, got.Err)
			}
		})
	}
}

func TestRelayResetPropagates(t *testing.T) {
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			e := eng.new(t, Options{})
			c, res := r.relayOne(e, false)
			// Mid-stream: the client has seen the first bytes when the server resets.
			if err := sendStream(c.server, 5, 256<<10); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c.client, make([]byte, 64<<10)); err != nil {
				t.Fatal(err)
			}
			c.server.SetLinger(0)
			c.server.Close()
			_, err := io.Copy(io.Discard, c.client)
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("client read ended with %v, want ECONNRESET (a reset, not EOF)", err)
			}
			got := res.wait(t)
			if !errors.Is(got.Err, ErrReset) || !errors.Is(got.Err, syscall.ECONNRESET) {
				t.Errorf("Result.Err = %v, want ErrReset wrapping ECONNRESET", got.Err)
			}
		})
	}
}

// A TLS client commonly ends with close_notify and then a reset (it closes with the server's
// close_notify unread). Whichever side resets after the data, the Result says so once: the
// message names "connection reset by peer" a single time (it once read "splice: connection
// reset by peer: splice: connection reset by peer", ErrReset's text then the errno's).
func TestRelayResetAfterDataNamedOnce(t *testing.T) {
	closeNotify := []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00} // a TLS alert record
	for _, eng := range engines(t) {
		for _, resetter := range []string{"client", "server"} {
			t.Run(eng.name+"/"+resetter, func(t *testing.T) {
				checkLeaks(t)
				r := newRig(t)
				e := eng.new(t, Options{})
				c, res := r.relayOne(e, eng.fds)
				from, to := c.client, c.server
				if resetter == "server" {
					from, to = c.server, c.client
				}
				if _, err := from.Write(closeNotify); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(to, make([]byte, len(closeNotify))); err != nil {
					t.Fatal(err)
				}
				from.SetLinger(0)
				from.Close()
				if _, err := io.Copy(io.Discard, to); !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("the other end's read ended with %v, want ECONNRESET", err)
				}
				got := res.wait(t)
				if !errors.Is(got.Err, ErrReset) || !errors.Is(got.Err, syscall.ECONNRESET) {
					t.Fatalf("Result.Err = %v, want ErrReset wrapping ECONNRESET", got.Err)
				}
				if n := strings.Count(got.Err.Error(), "connection reset by peer"); n != 1 {
					t.Errorf("Result.Err = %q names the reset %d times, want once", got.Err, n)
				}
			})
		}
	}
}

func TestRelayIdleTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	for _, eng := range engines(t) {
		t.Run(eng.name+"/idle-cut", func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			e := eng.new(t, Options{IdleTimeout: idle})
			c, res := r.relayOne(e, eng.fds)
			c.client.Write([]byte("ping"))
			if _, err := io.ReadFull(c.server, make([]byte, 4)); err != nil {
				t.Fatal(err)
			}
			c.server.Write([]byte("pong"))
			if _, err := io.ReadFull(c.client, make([]byte, 4)); err != nil {
				t.Fatal(err)
			}
			last := time.Now()
			c.client.SetReadDeadline(time.Now().Add(20 * time.Second))
			n, err := c.client.Read(make([]byte, 1))
			waited := time.Since(last)
			if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("idle client read: %d, %v; want the flow closed", n, err)
			}
			got := res.wait(t)
			if !errors.Is(got.Err, ErrIdleTimeout) {
				t.Errorf("Result.Err = %v, want ErrIdleTimeout", got.Err)
			}
			if waited < idle*9/10 {
				t.Errorf("cut after %v of idleness, before the %v timeout", waited, idle)
			}
			t.Logf("cut %v after the last byte (timeout %v)", waited, idle)
		})
		t.Run(eng.name+"/trickle-survives", func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			e := eng.new(t, Options{IdleTimeout: idle})
			c, res := r.relayOne(e, false)
			// One direction trickles for 4 idle periods; the other stays silent throughout.
			tick := time.NewTicker(idle / 4)
			defer tick.Stop()
			buf := make([]byte, 1)
			for i := 0; i < 16; i++ {
				<-tick.C
				if _, err := c.server.Write([]byte{byte(i)}); err != nil {
					t.Fatalf("server write %d: %v", i, err)
				}
				if _, err := io.ReadFull(c.client, buf); err != nil {
					t.Fatalf("trickle byte %d: %v (flow cut while active)", i, err)
				}
			}
			c.client.CloseWrite()
			c.server.CloseWrite()
			if got := res.wait(t); got.Err != nil || got.Down != 16 {
				t.Errorf("result: down %d err %v", got.Down, got.Err)
			}
		})
	}
}

func TestRelayDrain(t *testing.T) {
	const size = 2 << 20
	want := streamSum(9, size)
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			res := newResults(2)
			e := eng.new(t, Options{})
			fa, a := r.flow(eng.fds)
			defer a.close()
			fb, b := r.flow(false)
			defer b.close()
			resB := newResults(1)
			fa.Owner, fb.Owner = res, resB
			if err := e.Relay(fa); err != nil {
				t.Fatal(err)
			}
			if err := e.Relay(fb); err != nil {
				t.Fatal(err)
			}
			// b is mid-transfer: the client has part of a stream that never ends.
			if err := sendStream(b.server, 10, 128<<10); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(b.client, make([]byte, 64<<10)); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			drained := make(chan error, 1)
			go func() { drained <- e.Drain(ctx) }()
			// a transfers while the engine drains, and finishes in time.
			go func() {
				if err := sendStream(a.server, 9, size); err != nil {
					t.Errorf("a server: %v", err)
				}
				a.server.CloseWrite()
			}()
			a.client.CloseWrite()
			if sum, n, err := readSum(a.client); err != nil || n != size || sum != want {
				t.Errorf("a: got %d bytes, err %v, hash match %v", n, err, sum == want)
			}
			// b is cut: its client sees the end (reset or EOF) long before its stream ends.
			n, err := io.Copy(io.Discard, b.client)
			t.Logf("b client: %d more bytes, then %v", n, err)
			if err := <-drained; !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Drain = %v, want context.DeadlineExceeded", err)
			}
			if got := res.wait(t); got.Err != nil || got.Down != size {
				t.Errorf("finishing flow: down %d err %v", got.Down, got.Err)
			}
			if got := resB.wait(t); !errors.Is(got.Err, ErrDrainCut) {
				t.Errorf("outlasting flow: err %v, want ErrDrainCut", got.Err)
			}
			// A drained engine refuses new flows, closes their sockets and still calls Done.
			fc, c := r.flow(false)
			defer c.close()
			fc.Owner = res
			if err := e.Relay(fc); !errors.Is(err, ErrClosed) {
				t.Errorf("Relay after Drain = %v, want ErrClosed", err)
			}
			if got := res.wait(t); !errors.Is(got.Err, ErrClosed) {
				t.Errorf("refused flow's Done: err %v, want ErrClosed", got.Err)
			}
			if n, err := c.client.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("refused flow's client read %d, %v; want it closed", n, err)
			}
		})
	}
}

func TestRelayCloseCutsFlows(t *testing.T) {
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			res := newResults(3)
			e := eng.new(t, Options{})
			var cs []conns
			for i := 0; i < 3; i++ {
				f, c := r.flow(eng.fds && i != 1)
				cs = append(cs, c)
				f.Owner = res
				if err := e.Relay(f); err != nil {
					t.Fatal(err)
				}
			}
			e.Close()
			for i := 0; i < 3; i++ {
				if got := res.wait(t); !errors.Is(got.Err, ErrClosed) {
					t.Errorf("flow cut by Close: err %v, want ErrClosed", got.Err)
				}
			}
			for _, c := range cs {
				if n, err := c.client.Read(make([]byte, 1)); n != 0 || err == nil {
					t.Errorf("client of a closed engine read %d, %v", n, err)
				}
				c.close()
			}
			if e.Active() != 0 {
				t.Errorf("Active = %d after Close", e.Active())
			}
		})
	}
}

func TestRelayRefusesFlowWithoutSocket(t *testing.T) {
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			res := newResults(1)
			e := eng.new(t, Options{})
			f, c := r.flow(false)
			defer c.close()
			f.Upstream.Close()
			f.Upstream, f.Owner = nil, res
			want := ErrNoSocket
			if !eng.fds {
				want = ErrNeedConn // a missing conn, as the goroutine engine takes no fds
			}
			if err := e.Relay(f); !errors.Is(err, want) {
				t.Errorf("Relay = %v, want %v", err, want)
			}
			if got := res.wait(t); !errors.Is(got.Err, want) {
				t.Errorf("Ended: err %v, want %v", got.Err, want)
			}
			if n, err := c.client.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("client of a refused flow read %d, %v; want it closed", n, err)
			}
			if e.Active() != 0 {
				t.Errorf("Active = %d", e.Active())
			}
		})
	}
}

// TestGoroutineEngineTakesConnsOnly: raw fds and connecting upstreams are the splice engine's;
// the goroutine engine refuses them, closes what it was given and still reports the end.
func TestGoroutineEngineTakesConnsOnly(t *testing.T) {
	checkLeaks(t)
	r := newRig(t)
	e := NewGoroutine(Options{})
	defer e.Close()
	for _, tc := range []struct {
		name string
		edit func(f *Flow)
	}{
		{"fds", func(*Flow) {}},
		{"connecting", func(f *Flow) { f.UpstreamConnecting = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c := r.flow(tc.name == "fds")
			defer c.close()
			tc.edit(&f)
			res := newResults(1)
			f.Owner = res
			if err := e.Relay(f); !errors.Is(err, ErrNeedConn) {
				t.Errorf("Relay = %v, want ErrNeedConn", err)
			}
			if got := res.wait(t); !errors.Is(got.Err, ErrNeedConn) {
				t.Errorf("Ended: err %v, want ErrNeedConn", got.Err)
			}
			if n, err := c.client.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("client of a refused flow read %d, %v; want it closed", n, err)
			}
		})
	}
}

// TestRelayWithoutOwner: a flow nobody owns is refused and its sockets closed.
func TestRelayWithoutOwner(t *testing.T) {
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			e := eng.new(t, Options{})
			f, c := r.flow(eng.fds)
			defer c.close()
			if err := e.Relay(f); !errors.Is(err, ErrNoOwner) {
				t.Errorf("Relay = %v, want ErrNoOwner", err)
			}
			if n, err := c.client.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("client of a refused flow read %d, %v; want it closed", n, err)
			}
			if e.Active() != 0 {
				t.Errorf("Active = %d", e.Active())
			}
		})
	}
}
