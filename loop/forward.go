package loop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/nat464/nat464-sidecar/forward"
	"github.com/nat464/nat464-sidecar/splice"
)

// kindForward is a proxy connection that carries plain-HTTP requests (absolute form), which
// package forward serves on a goroutine: not the high-rate path, so net/http's parser, not
// gnet and splice, reads them.
const kindForward = "forward"

// forwarder hands the proxy port's plain-HTTP connections to a forward.Server that dials
// through the front end's Dialer (resolver, NAT64, Happy Eyeballs, the self-loop refusal) and
// answers its errors with the CONNECT path's status table.
type forwarder struct {
	cfg *Config
	srv *forward.Server
}

func newForwarder(cfg *Config) *forwarder {
	fw := &forwarder{cfg: cfg}
	fw.srv = forward.New(forward.Config{
		Dial:            cfg.dialer().DialContext,
		Status:          HTTPStatusFor,
		DialFailed:      fw.dialFailed,
		Auth:            fw.checker,
		DialTimeout:     cfg.dialTimeout(),
		HeaderTimeout:   cfg.handshakeTimeout(),
		IdleTimeout:     cfg.IdleTimeout,
		Log:             cfg.log(),
		Metrics:         cfg.ForwardMetrics,
		ResponseTimeout: cfg.ForwardResponseTimeout,
	})
	return fw
}

func (fw *forwarder) checker() forward.Checker {
	if c := fw.cfg.Auth.get(); c != nil {
		return c
	}
	return nil
}

// dialFailed logs and counts a forwarded request's failed dial as a CONNECT's would be.
func (fw *forwarder) dialFailed(dest string, err error) {
	msg := "proxy dial failed"
	if de, ok := denied(err); ok {
		fw.cfg.Metrics.reject(RejectPolicy)
		logDenied(fw.cfg.log(), "http-forward", dest, de)
		return
	}
	switch {
	case errors.Is(err, ErrSelf):
		fw.cfg.Metrics.reject(RejectSelf)
		msg = "proxy request refused: the destination is the sidecar itself"
	case HTTPStatusFor(err) == 403:
		fw.cfg.Metrics.reject(RejectPolicy)
	}
	fw.cfg.log().Log(context.Background(), dialLevel(err), msg, "protocol", "http-forward", "dest", dest, "err", fdErr(err))
}

// serve forwards the requests on c (early: bytes the handshake already read) until the
// connection ends, and settles its owner: a forwarding connection counts as one flow of kind
// forward, from hand-over to close.
func (fw *forwarder) serve(c net.Conn, early []byte, o *owner) {
	o.kind, o.target = kindForward, "http-forward"
	o.Connected(nil)
	start := time.Now()
	r := fw.srv.Serve(c, early)
	o.Ended(splice.Result{Up: r.Up, Down: r.Down, Start: start, End: time.Now(), Err: r.Err})
}

// serveFD is serve for a socket taken from an event loop.
func (fw *forwarder) serveFD(fd int, early []byte, o *owner) {
	f := os.NewFile(uintptr(fd), "proxy-client")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fw.cfg.log().Error("plain-HTTP proxy connection lost", "err", fdErr(fmt.Errorf("loop: file conn: %w", err)))
		o.close()
		return
	}
	fw.serve(c, early, o)
}

func (fw *forwarder) shutdown(ctx context.Context) error { return fw.srv.Shutdown(ctx) }
