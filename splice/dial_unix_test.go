//go:build unix

package splice

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// connectCalls records OnConnect's calls and answers with reply.
type connectCalls struct {
	mu    sync.Mutex
	errs  []error
	reply []byte
}

func (c *connectCalls) onConnect(err error) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err)
	return c.reply
}

func (c *connectCalls) get() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errs...)
}

// dialFlow is a Flow whose client side is a fresh accepted connection and whose upstream the
// engine dials at to.
func (r *rig) dialFlow(to netip.AddrPort) (Flow, *net.TCPConn) {
	r.t.Helper()
	cl, side := r.client()
	r.t.Cleanup(func() { cl.Close() })
	fd, err := DetachFD(side)
	if err != nil {
		r.t.Fatal(err)
	}
	return Flow{ClientFD: fd, UpstreamFD: -1, Dial: to}, cl
}

func addrPort(t testing.TB, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func TestRelayDial(t *testing.T) {
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			e := eng.new(t, Options{})
			res := newResults(1)
			calls := &connectCalls{reply: []byte("unused")}
			f, client := r.dialFlow(addrPort(t, r.serverLn.Addr()))
			f.ToClient, f.ToUpstream = []byte("REPLY|"), []byte("EARLY|")
			f.OnConnect, f.Done = calls.onConnect, res.done
			if err := e.Relay(f); err != nil {
				t.Fatal(err)
			}
			s, err := r.serverLn.Accept()
			if err != nil {
				t.Fatal(err)
			}
			server := s.(*net.TCPConn)
			defer server.Close()
			if _, err := server.Write([]byte("down")); err != nil {
				t.Fatal(err)
			}
			if _, err := client.Write([]byte("up")); err != nil {
				t.Fatal(err)
			}
			client.CloseWrite()
			server.CloseWrite()
			upc := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(server)
				upc <- b
			}()
			down, err := io.ReadAll(client)
			if err != nil || string(down) != "REPLY|down" {
				t.Errorf("client got %q (%v), want \"REPLY|down\"", down, err)
			}
			if up := <-upc; string(up) != "EARLY|up" {
				t.Errorf("server got %q, want \"EARLY|up\"", up)
			}
			got := res.wait(t)
			if got.Err != nil || got.ConnectErr != nil || got.Up != 8 || got.Down != 4 {
				t.Errorf("result: up %d (want 8) down %d (want 4) err %v connect %v", got.Up, got.Down, got.Err, got.ConnectErr)
			}
			if errs := calls.get(); len(errs) != 1 || errs[0] != nil {
				t.Errorf("OnConnect calls: %v, want one with nil", errs)
			}
		})
	}
}

// TestRelayDialRefused: a refused Dial sends OnConnect's reply and a FIN, or resets the client
// when OnConnect has nothing to say.
func TestRelayDialRefused(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := addrPort(t, dead.Addr())
	dead.Close()
	for _, eng := range engines(t) {
		for _, reply := range []string{"FAILED", ""} {
			t.Run(eng.name+"/reply="+reply, func(t *testing.T) {
				checkLeaks(t)
				r := newRig(t)
				e := eng.new(t, Options{})
				res := newResults(1)
				calls := &connectCalls{reply: []byte(reply)}
				f, client := r.dialFlow(deadAddr)
				f.ToClient, f.OnConnect, f.Done = []byte("must never arrive"), calls.onConnect, res.done
				if err := e.Relay(f); err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(client)
				if reply != "" && (err != nil || string(got) != reply) {
					t.Errorf("client got %q (%v), want %q then EOF", got, err, reply)
				}
				if reply == "" && (len(got) != 0 || !errors.Is(err, syscall.ECONNRESET)) {
					t.Errorf("client got %q (%v), want a reset", got, err)
				}
				out := res.wait(t)
				if !errors.Is(out.ConnectErr, syscall.ECONNREFUSED) {
					t.Errorf("ConnectErr = %v, want ECONNREFUSED", out.ConnectErr)
				}
				if errs := calls.get(); len(errs) != 1 || !errors.Is(errs[0], syscall.ECONNREFUSED) {
					t.Errorf("OnConnect calls: %v, want one with ECONNREFUSED", errs)
				}
			})
		}
	}
}

// fullListener returns the address of a listener whose accept queue is full: the kernel drops
// further SYNs, so a connect to it hangs until its timeout, which a test on loopback otherwise
// cannot arrange.
func fullListener(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // room for one connection, never accepted
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))
	filler, err := net.Dial("tcp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	return ap
}

// TestRelayDialTimeout: a connect that never completes ends at ConnectTimeout with ETIMEDOUT,
// and the client gets the failure reply.
func TestRelayDialTimeout(t *testing.T) {
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			to := fullListener(t)
			e := eng.new(t, Options{})
			res := newResults(1)
			calls := &connectCalls{reply: []byte("TIMEOUT")}
			f, client := r.dialFlow(to)
			f.ConnectTimeout, f.OnConnect, f.Done = 200*time.Millisecond, calls.onConnect, res.done
			start := time.Now()
			if err := e.Relay(f); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(client)
			took := time.Since(start)
			if err != nil || string(got) != "TIMEOUT" {
				t.Errorf("client got %q (%v), want \"TIMEOUT\" then EOF", got, err)
			}
			// The splice engine looks at connect deadlines once a second; 5s is generous.
			if took < 200*time.Millisecond || took > 5*time.Second {
				t.Errorf("connect gave up after %v, want between the 200ms timeout and 5s", took)
			}
			if r := res.wait(t); !errors.Is(r.ConnectErr, syscall.ETIMEDOUT) {
				t.Errorf("ConnectErr = %v, want ETIMEDOUT", r.ConnectErr)
			}
		})
	}
}

// TestRelayDialWithUpstream: Dial and an upstream socket together are refused, with every
// socket closed and Done called.
func TestRelayDialWithUpstream(t *testing.T) {
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			e := eng.new(t, Options{})
			res := newResults(1)
			f, c := r.flow(true)
			defer c.close()
			f.Dial = addrPort(t, r.serverLn.Addr())
			f.Done = res.done
			if err := e.Relay(f); !errors.Is(err, ErrDialAndUpstream) {
				t.Fatalf("Relay = %v, want ErrDialAndUpstream", err)
			}
			if got := res.wait(t); !errors.Is(got.Err, ErrDialAndUpstream) {
				t.Errorf("Done's Err = %v, want ErrDialAndUpstream", got.Err)
			}
			if n, err := c.client.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("client read %d, %v; want it closed", n, err)
			}
		})
	}
}
