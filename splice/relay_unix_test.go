//go:build unix

package splice

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// connectNB starts a non-blocking connect(2) to addr and returns the fd while it is in progress.
func connectNB(t testing.TB, addr net.Addr) int {
	t.Helper()
	ta := addr.(*net.TCPAddr)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	sa := &syscall.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	if err := syscall.Connect(fd, sa); err != nil && !errors.Is(err, syscall.EINPROGRESS) {
		syscall.Close(fd)
		t.Fatalf("connect: %v", err)
	}
	return fd
}

func TestRelayPreBytesFirst(t *testing.T) {
	toClient := streamBytes(11, 3<<20) // larger than socket buffers: partial writes and EAGAIN
	toUpstream := []byte("EARLY-UP|")
	for _, eng := range engines(t) {
		for _, connecting := range []bool{false, true} {
			if connecting && !eng.fds {
				continue // connecting upstreams are the splice engine's alone
			}
			name := eng.name + "/connected"
			if connecting {
				name = eng.name + "/connecting"
			}
			t.Run(name, func(t *testing.T) {
				checkLeaks(t)
				r := newRig(t)
				res := newResults(1)
				e := eng.new(t, Options{})
				f, c := r.flow(eng.fds)
				defer c.close()
				if connecting {
					// Replace the upstream with one whose connect is still in progress.
					syscall.Close(f.UpstreamFD)
					c.server.Close()
					f.UpstreamFD = connectNB(t, r.serverLn.Addr())
					f.UpstreamConnecting = true
				}
				f.ToClient, f.ToUpstream, f.Owner = toClient, toUpstream, res
				// Both peers already sent bytes: they must come after the pre bytes.
				if _, err := c.client.Write([]byte("rest-up")); err != nil {
					t.Fatal(err)
				}
				if err := e.Relay(f); err != nil {
					t.Fatal(err)
				}
				if connecting {
					s, err := r.serverLn.Accept()
					if err != nil {
						t.Fatal(err)
					}
					c.server = s.(*net.TCPConn)
				}
				if _, err := c.server.Write([]byte("rest-down")); err != nil {
					t.Fatal(err)
				}
				c.client.CloseWrite()
				c.server.CloseWrite()
				upc := make(chan []byte, 1)
				go func() {
					b, _ := io.ReadAll(c.server)
					upc <- b
				}()
				down, err := io.ReadAll(c.client)
				if err != nil || !bytes.Equal(down, append(append([]byte{}, toClient...), "rest-down"...)) {
					t.Errorf("client got %d bytes (%v), want ToClient (%d) then \"rest-down\"", len(down), err, len(toClient))
				}
				if up := <-upc; string(up) != "EARLY-UP|rest-up" {
					t.Errorf("server got %q, want \"EARLY-UP|rest-up\"", up)
				}
				got := res.wait(t)
				if got.Err != nil || got.ConnectErr != nil || got.Up != 16 || got.Down != 9 {
					t.Errorf("result: up %d (want 16) down %d (want 9) err %v connect %v", got.Up, got.Down, got.Err, got.ConnectErr)
				}
			})
		}
	}
}

func TestRelayConnectRefused(t *testing.T) {
	for _, eng := range fdEngines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			res := newResults(1)
			e := eng.new(t, Options{})
			dead, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			deadAddr := dead.Addr()
			dead.Close()
			f, c := r.flow(eng.fds)
			defer c.close()
			syscall.Close(f.UpstreamFD)
			f.UpstreamFD = connectNB(t, deadAddr)
			f.UpstreamConnecting = true
			f.ToClient = []byte("must never arrive")
			f.Owner = res
			if err := e.Relay(f); err != nil {
				t.Fatal(err)
			}
			if n, err := c.client.Read(make([]byte, 32)); n != 0 || err == nil {
				t.Errorf("client read %d, %v; want the client closed", n, err)
			}
			got := res.wait(t)
			if !errors.Is(got.ConnectErr, syscall.ECONNREFUSED) {
				t.Errorf("ConnectErr = %v, want ECONNREFUSED", got.ConnectErr)
			}
			var op *net.OpError
			if !errors.As(got.ConnectErr, &op) {
				t.Errorf("ConnectErr %T is not a *net.OpError", got.ConnectErr)
			}
			if got.Up != 0 || got.Down != 0 {
				t.Errorf("relayed %d/%d bytes on a failed connect", got.Up, got.Down)
			}
		})
	}
}

// TestRelayReplyWriteFails: the client reset before its reply (ToClient) could be written. The
// write fails, the flow ends once with that error, nothing reaches the upstream but what the
// client sent, and both sockets are closed (checkLeaks).
func TestRelayReplyWriteFails(t *testing.T) {
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			res := newResults(2)
			e := eng.new(t, Options{})
			f, c := r.flow(eng.fds)
			defer c.close()
			c.client.SetLinger(0)
			c.client.Close() // an RST: the flow's client socket is reset before the engine has it
			time.Sleep(50 * time.Millisecond)
			f.ToClient, f.Owner = []byte("REPLY"), res
			if err := e.Relay(f); err != nil {
				t.Fatal(err)
			}
			got := res.wait(t)
			if got.Err == nil {
				t.Error("Result.Err = nil, want the failed write to the reset client")
			}
			if got.Up != 0 || got.Down != 0 {
				t.Errorf("relayed %d/%d bytes to a reset client", got.Up, got.Down)
			}
			c.server.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.server.Read(make([]byte, 8)); n != 0 || err == nil {
				t.Errorf("upstream read %d, %v; want it closed", n, err)
			}
			select {
			case extra := <-res.ch:
				t.Errorf("the flow ended twice: %+v", extra)
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
}
