package forward

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// clientConn is one client connection being served: requests are read and answered one at a
// time (no pipelining ahead of an answer), each with the origin connection kept from the
// request before when it is for the same origin.
type clientConn struct {
	s        *Server
	cfg      *Config
	c        net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	up, down atomic.Int64
	requests int
	origin   *originConn
	early    *bytes.Reader // the front end's bytes, ahead of c; br normally takes them whole

	mu       sync.Mutex
	idle     bool // waiting for a request: drain closes it at once
	draining bool
	aborted  bool
}

// originConn is a connection to one origin, kept between requests for it.
type originConn struct {
	key string // host:port as dialed, lower-case
	c   net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
}

func (o *originConn) close() { o.c.Close() }

func newClientConn(s *Server, c net.Conn, early []byte) *clientConn {
	cc := &clientConn{s: s, cfg: &s.cfg, c: c}
	var r io.Reader = c
	if len(early) > 0 {
		cc.early = bytes.NewReader(early)
		r = io.MultiReader(cc.early, c)
	}
	cc.br = newBufReader(r, cc.cfg.maxHeaderBytes())
	cc.bw = bufio.NewWriterSize(counter{c, &cc.down}, 4<<10)
	return cc
}

// drain makes the connection end after its current exchange, or now when it is idle.
func (cc *clientConn) drain() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.draining = true
	if cc.idle {
		_ = cc.c.SetReadDeadline(time.Unix(1, 0))
	}
}

// abort cuts the connection and its origin's, whatever they are doing.
func (cc *clientConn) abort() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.aborted = true
	_ = cc.c.SetDeadline(time.Unix(1, 0))
	if cc.origin != nil {
		_ = cc.origin.c.SetDeadline(time.Unix(1, 0))
	}
}

// setIdle marks the wait for a request; it reports false when the connection is to end.
func (cc *clientConn) setIdle(idle bool) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.idle = idle
	return !cc.draining && !cc.aborted
}

func (cc *clientConn) isDraining() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.draining
}

func (cc *clientConn) setOrigin(o *originConn) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.origin != nil && cc.origin != o {
		cc.origin.close()
	}
	cc.origin = o
	if o != nil && cc.aborted {
		_ = o.c.SetDeadline(time.Unix(1, 0))
	}
}

// serve runs the request loop and closes everything at its end.
func (cc *clientConn) serve() Result {
	var err error
	defer func() {
		cc.setOrigin(nil)
		cc.c.Close()
	}()
	for keep := true; keep; {
		if !cc.setIdle(true) {
			break
		}
		wait := cc.cfg.keepAlive()
		if cc.requests == 0 {
			wait = cc.cfg.headerTimeout()
		}
		_ = cc.c.SetReadDeadline(time.Now().Add(wait))
		hdr, rerr := readHeader(cc.br, cc.cfg.maxHeaderBytes())
		if !cc.setIdle(false) {
			break
		}
		if rerr != nil {
			err = cc.headerFailed(rerr)
			break
		}
		_ = cc.c.SetReadDeadline(time.Time{})
		keep, err = cc.exchange(hdr)
	}
	return Result{Up: cc.up.Load(), Down: cc.down.Load(), Requests: cc.requests, Err: err}
}

// headerFailed answers a request header that could not be read: too large gets 431, a client
// that went quiet or away gets nothing (an idle keep-alive connection ending is normal).
func (cc *clientConn) headerFailed(err error) error {
	if errors.Is(err, ErrHeaderTooLarge) {
		cc.requests++
		return cc.refuse(http.StatusRequestHeaderFieldsTooLarge, err.Error(), nil)
	}
	var ne net.Error
	if errors.Is(err, io.EOF) || (errors.As(err, &ne) && ne.Timeout()) {
		return nil
	}
	return err
}

// exchange serves one request whose header block br holds. It reports whether the client
// connection may carry another request.
func (cc *clientConn) exchange(hdr []byte) (bool, error) {
	cc.requests++
	if err := checkHeader(hdr); err != nil {
		return false, cc.refuse(http.StatusBadRequest, err.Error(), nil)
	}
	req, err := http.ReadRequest(cc.br)
	if err != nil {
		return false, cc.refuse(http.StatusBadRequest, "forward: malformed request: "+err.Error(), nil)
	}
	if !cc.authorized(req) {
		return false, cc.refuse(http.StatusProxyAuthRequired, "forward: proxy authentication required (Basic)", nil)
	}
	if req.Method == http.MethodConnect {
		return false, cc.tunnel(req)
	}
	host, port, msg := target(req)
	if msg != "" {
		return false, cc.refuse(http.StatusBadRequest, msg, nil)
	}
	return cc.forward(req, host, port)
}

// target checks an absolute-form request's URL and returns the origin to dial, or why not.
func target(req *http.Request) (host string, port uint16, msg string) {
	u := req.URL
	switch {
	case u.Scheme == "" || u.Host == "":
		return "", 0, fmt.Sprintf("forward: %q is not a proxy request: this is a proxy port; send absolute-form (GET http://host/path) or CONNECT host:port", req.RequestURI)
	case strings.EqualFold(u.Scheme, "https"):
		return "", 0, "forward: https:// in absolute form: a proxy carries https through CONNECT; point HTTPS_PROXY at this proxy (curl: -p / --proxytunnel) so the client sends CONNECT"
	case !strings.EqualFold(u.Scheme, "http"):
		return "", 0, fmt.Sprintf("forward: scheme %q not supported: only http:// is forwarded (https through CONNECT)", u.Scheme)
	}
	host = u.Hostname()
	p, err := portOf(u.Port(), 80)
	if host == "" || err != nil || strings.ContainsAny(host, "% ") {
		return "", 0, fmt.Sprintf("forward: bad host in %q", u.Host)
	}
	return host, p, ""
}

func (cc *clientConn) authorized(req *http.Request) bool {
	if cc.cfg.Auth == nil {
		return true
	}
	ck := cc.cfg.Auth()
	if ck == nil {
		return true
	}
	user, pass, ok := parseBasic(req.Header.Get("Proxy-Authorization"))
	return ok && ck.Check(user, pass)
}

// dial connects to an origin within the dial timeout; the error is answered by the caller.
func (cc *clientConn) dial(host string, port uint16) (*originConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cc.cfg.dialTimeout())
	defer cancel()
	c, err := cc.cfg.Dial(ctx, host, port)
	if err != nil {
		return nil, err
	}
	o := &originConn{key: originKey(host, port), c: c}
	o.br = newBufReader(c, cc.cfg.maxHeaderBytes())
	o.bw = bufio.NewWriterSize(counter{c, &cc.up}, 4<<10)
	return o, nil
}

func originKey(host string, port uint16) string {
	return net.JoinHostPort(strings.ToLower(host), fmt.Sprint(port))
}

// dialFailed answers a failed dial with the caller's status and the reason.
func (cc *clientConn) dialFailed(dest string, err error) error {
	if cc.cfg.DialFailed != nil {
		cc.cfg.DialFailed(dest, err)
	}
	return cc.refuse(cc.cfg.status(err), fmt.Sprintf("forward: cannot connect to %s: %v", dest, err), nil)
}

// refuse sends an error answer that closes the connection, and counts it.
func (cc *clientConn) refuse(status int, msg string, extra http.Header) error {
	cc.cfg.Metrics.request(fmt.Sprint(status))
	cc.cfg.log().Debug("plain-HTTP request refused", "status", status, "reason", msg)
	_ = cc.c.SetWriteDeadline(time.Now().Add(cc.cfg.headerTimeout()))
	writeError(cc.bw, status, msg)
	return cc.bw.Flush()
}

// tunnel serves CONNECT on a connection that was forwarding plain HTTP: the client may reuse
// its proxy connection for an https:// URL. The tunnel is relayed with io.Copy, which splices
// on Linux; the connection ends with it.
func (cc *clientConn) tunnel(req *http.Request) error {
	host, ps, err := net.SplitHostPort(req.Host)
	p, perr := portOf(ps, 0)
	if err != nil || perr != nil || ps == "" || host == "" {
		return cc.refuse(http.StatusBadRequest, fmt.Sprintf("forward: CONNECT target %q: want host:port", req.Host), nil)
	}
	o, err := cc.dial(host, p)
	if err != nil {
		return cc.dialFailed(req.Host, err)
	}
	cc.setOrigin(o)
	cc.cfg.Metrics.request(outcomeTunnel)
	if _, err := cc.bw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return err
	}
	if err := cc.bw.Flush(); err != nil {
		return err
	}
	if n := cc.br.Buffered(); n > 0 { // the client's first tunnel bytes, read with the header
		b, _ := cc.br.Peek(n)
		if _, err := o.c.Write(b); err != nil {
			return err
		}
		cc.up.Add(int64(n))
		_, _ = cc.br.Discard(n)
	}
	if cc.early != nil && cc.early.Len() > 0 {
		n, err := cc.early.WriteTo(o.c)
		cc.up.Add(n)
		if err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() {
		n, err := io.Copy(o.c, cc.c)
		cc.up.Add(n)
		closeWrite(o.c)
		errc <- err
	}()
	n, err := io.Copy(cc.c, o.c)
	cc.down.Add(n)
	closeWrite(cc.c)
	return errors.Join(err, <-errc)
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}
