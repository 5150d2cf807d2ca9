package admin

import (
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The admin server holds at most MaxConns connections: one past the bound is closed at once and
// counted, the others are served, and a slot that frees is used again.
func TestMaxConns(t *testing.T) {
	s := &Server{Addr: "127.0.0.1:0", MaxConns: 3, Rejects: NewRejects(nil)}
	addr, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(t.Context())
	var held []net.Conn
	for range 3 { // idle connections hold their slots until the header timeout
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	over, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := over.Read(make([]byte, 1)); n != 0 || err == nil || os.IsTimeout(err) {
		t.Fatalf("a connection past MaxConns read %d bytes, %v: want it closed at once", n, err)
	}
	if got := testutil.ToFloat64(s.Rejects); got != 1 {
		t.Errorf("rejects_total = %v, want 1", got)
	}
	held[0].Close()
	c := &http.Client{Timeout: 5 * time.Second}
	for deadline := time.Now().Add(5 * time.Second); ; { // the slot frees once the server saw the close
		resp, err := c.Get("http://" + addr.String() + PathLivez)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("/livez = %d with a slot free", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/livez with a slot free: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// flakyListener fails its first fails Accepts with EMFILE, as at the open-file limit.
type flakyListener struct {
	net.Listener
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// At the open-file limit the listener spends a reserved descriptor and accepts again; with the
// reserve spent, the error reaches the caller; a closed connection refills the reserve.
func TestReserveAtFileLimit(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: inner, fails: reserveFDs}
	l := newGuardedListener(fl, 4, nil)
	defer l.Close()
	if len(l.reserve) != reserveFDs {
		t.Fatalf("reserve holds %d fds, want %d", len(l.reserve), reserveFDs)
	}
	go func() {
		if c, err := net.Dial("tcp", inner.Addr().String()); err == nil {
			defer c.Close()
			c.Read(make([]byte, 1))
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept at the limit: %v", err)
	}
	if len(l.reserve) != 0 {
		t.Errorf("reserve holds %d fds after %d EMFILEs, want 0", len(l.reserve), reserveFDs)
	}
	fl.fails = 1
	if _, err := l.Accept(); !isFDLimit(err) {
		t.Errorf("Accept with the reserve spent: %v, want EMFILE", err)
	}
	c.Close()
	if len(l.reserve) != reserveFDs {
		t.Errorf("reserve holds %d fds after a close, want %d", len(l.reserve), reserveFDs)
	}
}
