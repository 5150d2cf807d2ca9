// Package forward is the proxy port's plain-HTTP forwarder: a client that was told
// HTTP_PROXY=http://… sends its http:// requests in absolute form (`GET http://host/path
// HTTP/1.1`, RFC 9112 §3.2.2), and this package forwards each to its origin and the response
// back, over a connection the proxy front end hands it once it saw such a request.
//
// In scope: parsing with net/http (ReadRequest, ReadResponse) behind a pre-scan that refuses
// what a proxy must not pass on (conflicting framing, obsolete line folding, oversized
// headers), origin-form rewriting with the Host of the target, hop-by-hop header removal,
// streamed bodies in every framing (Content-Length, chunked, close-delimited, Expect:
// 100-continue and other 1xx), keep-alive on both sides, a later request for another origin
// on the same client connection, CONNECT on a connection already forwarding (tunnelled with
// io.Copy, which splices on Linux), proxy authentication (Basic) and an error answer with a
// body that says what happened. Out of scope: caching, https:// in absolute form (a client
// must use CONNECT, and is told so), protocol upgrades (WebSocket over plain HTTP: the
// Upgrade header is hop-by-hop and is removed), HTTP/2. Dialing is the caller's (the sidecar's
// resolver, NAT64 and Happy Eyeballs), so is classifying a dial error into a status.
package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Checker validates proxy credentials.
type Checker interface {
	Check(user, pass string) bool
}

// Config is what a Server needs. Zero values get the defaults their comments name.
type Config struct {
	// Dial connects to host (a name or an IP literal) and port for a request; required.
	Dial func(ctx context.Context, host string, port uint16) (net.Conn, error)
	// Status gives the HTTP status that answers a Dial error; if nil, 504 for timeouts and 502
	// for the rest.
	Status func(error) int
	// DialFailed, if not nil, hears of every failed Dial (the caller logs and counts it as it
	// does a failed CONNECT).
	DialFailed func(dest string, err error)
	// Auth, if not nil and returning a non-nil Checker, makes every request carry valid Basic
	// Proxy-Authorization, else it is answered 407. Called per request (credentials reload).
	Auth func() Checker
	// DialTimeout bounds one Dial; if zero, 10s.
	DialTimeout time.Duration
	// HeaderTimeout bounds the wait for the first request's header; if zero, 10s.
	HeaderTimeout time.Duration
	// KeepAlive bounds the wait for a later request on a kept-alive client connection, and how
	// long an idle origin connection is kept; if zero, 60s.
	KeepAlive time.Duration
	// ResponseTimeout bounds the wait for the origin's response header; if zero, 60s (nginx's
	// proxy_read_timeout). Bodies are bounded by IdleTimeout only.
	ResponseTimeout time.Duration
	// IdleTimeout, if positive, ends an exchange when no body byte moved either way for it.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps a request's and a response's header block; if zero, 32 KiB.
	MaxHeaderBytes int
	Log            *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics
}

func (c *Config) dialTimeout() time.Duration   { return orDefault(c.DialTimeout, 10*time.Second) }
func (c *Config) headerTimeout() time.Duration { return orDefault(c.HeaderTimeout, 10*time.Second) }
func (c *Config) keepAlive() time.Duration     { return orDefault(c.KeepAlive, 60*time.Second) }
func (c *Config) responseTimeout() time.Duration {
	return orDefault(c.ResponseTimeout, 60*time.Second)
}

func (c *Config) maxHeaderBytes() int {
	if c.MaxHeaderBytes > 0 {
		return c.MaxHeaderBytes
	}
	return DefaultMaxHeaderBytes
}

// DefaultMaxHeaderBytes caps a header block when Config.MaxHeaderBytes is zero: Squid's and
// nginx's common request limits are 64 KiB and 32 KiB; every connection holds one buffer of
// this size per side.
const DefaultMaxHeaderBytes = 32 << 10

func (c *Config) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (c *Config) status(err error) int {
	if c.Status != nil {
		return c.Status(err)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// Result is what one client connection did.
type Result struct {
	// Up counts bytes sent to origins (headers included), Down bytes sent to the client.
	Up, Down int64
	// Requests counts the requests answered (forwarded or refused).
	Requests int
	// Err is why the connection ended abnormally (a peer reset, a timeout); nil when it
	// closed cleanly or after an error answer.
	Err error
}

// Server forwards the requests of the client connections it is handed. Its zero value is not
// usable: make one with New.
type Server struct {
	cfg      Config
	mu       sync.Mutex
	conns    map[*clientConn]struct{}
	draining bool
	wg       sync.WaitGroup
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	return &Server{cfg: cfg, conns: map[*clientConn]struct{}{}}
}

// ErrDraining is Serve's result for a connection handed over after Shutdown began.
var ErrDraining = errors.New("forward: shutting down")

// Serve forwards the requests on c until the client closes, an answer closes the connection,
// or Shutdown ends it; early are bytes the front end already read from c. It closes c.
func (s *Server) Serve(c net.Conn, early []byte) Result {
	cc := newClientConn(s, c, early)
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		c.Close()
		return Result{Err: ErrDraining}
	}
	s.conns[cc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, cc)
		s.mu.Unlock()
		s.wg.Done()
	}()
	s.cfg.Metrics.connOpened()
	defer s.cfg.Metrics.connClosed()
	return cc.serve()
}

// Active reports how many client connections are being served.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops taking requests: connections waiting for their next request are closed now,
// those in an exchange after it (their answer says Connection: close). When ctx ends first,
// every connection still open is closed, and Shutdown returns ctx's error once they are gone.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for cc := range s.conns {
		cc.drain()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for cc := range s.conns {
		cc.abort()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// counter counts the bytes written through it.
type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c counter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func portOf(s string, def uint16) (uint16, error) {
	if s == "" {
		return def, nil
	}
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(p), nil
}

// newBufReader is a reader whose buffer holds a whole header block (readHeader peeks it).
func newBufReader(r io.Reader, max int) *bufio.Reader { return bufio.NewReaderSize(r, max) }
