//go:build unix

package splice

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// connectCalls records Connected's calls and answers with reply.
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

// owner reports Connected to c and Ended to res.
func (c *connectCalls) owner(res *results) Owner { return connectOwner{c, res} }

type connectOwner struct {
	calls *connectCalls
	res   *results
}

func (o connectOwner) Connected(err error) []byte { return o.calls.onConnect(err) }
func (o connectOwner) Ended(r Result)             { o.res.done(r) }

func (c *connectCalls) get() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errs...)
}

// connectingFlow is a Flow whose client side is a fresh accepted connection and whose upstream
// is a non-blocking connect to to, still in progress.
func (r *rig) connectingFlow(to net.Addr) (Flow, *net.TCPConn) {
	r.t.Helper()
	cl, side := r.client()
	r.t.Cleanup(func() { cl.Close() })
	fd, err := DetachFD(side)
	if err != nil {
		r.t.Fatal(err)
	}
	return Flow{ClientFD: fd, UpstreamFD: connectNB(r.t, to), UpstreamConnecting: true}, cl
}

func TestRelayOnConnect(t *testing.T) {
	for _, eng := range fdEngines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			e := eng.new(t, Options{})
			res := newResults(1)
			calls := &connectCalls{reply: []byte("unused")}
			f, client := r.connectingFlow(r.serverLn.Addr())
			f.ToClient, f.ToUpstream = []byte("REPLY|"), []byte("EARLY|")
			f.Owner = calls.owner(res)
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
				t.Errorf("Connected calls: %v, want one with nil", errs)
			}
		})
	}
}

// TestRelayOnConnectRefused: a refused connect sends Connected's reply and a FIN, or resets the
// client when Connected has nothing to say.
func TestRelayOnConnectRefused(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr()
	dead.Close()
	for _, eng := range fdEngines(t) {
		for _, reply := range []string{"FAILED", ""} {
			t.Run(eng.name+"/reply="+reply, func(t *testing.T) {
				checkLeaks(t)
				r := newRig(t)
				e := eng.new(t, Options{})
				res := newResults(1)
				calls := &connectCalls{reply: []byte(reply)}
				f, client := r.connectingFlow(deadAddr)
				f.ToClient, f.Owner = []byte("must never arrive"), calls.owner(res)
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
					t.Errorf("Connected calls: %v, want one with ECONNREFUSED", errs)
				}
			})
		}
	}
}

// TestRelayConnectTimeout: a connect that never completes ends at ConnectTimeout with
// ETIMEDOUT, and the client gets the failure reply.
func TestRelayConnectTimeout(t *testing.T) {
	for _, eng := range fdEngines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			to := net.TCPAddrFromAddrPort(testnet.FullListener(t))
			e := eng.new(t, Options{})
			res := newResults(1)
			calls := &connectCalls{reply: []byte("TIMEOUT")}
			f, client := r.connectingFlow(to)
			f.ConnectTimeout, f.Owner = 200*time.Millisecond, calls.owner(res)
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
