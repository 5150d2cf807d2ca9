package forward

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"time"
)

// via is this proxy's Via entry (RFC 9110 §7.6.3), added to what it forwards each way.
const via = "1.1 nat464-sidecar"

// hopHeaders are the hop-by-hop fields (RFC 9110 §7.6.1) removed from every forwarded
// message, besides those its Connection field names. Content-Length and Transfer-Encoding are
// removed too: the framing is written anew for the next hop.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Transfer-Encoding", "Upgrade", "Content-Length"}

// removeHopByHop removes the hop-by-hop fields from h, and those named by conn, the tokens of
// the message's Connection fields as received.
func removeHopByHop(h http.Header, conn []string) {
	for _, v := range h["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, tok := range conn {
		h.Del(tok)
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

func addVia(h http.Header) {
	if v := h.Get("Via"); v != "" {
		h.Set("Via", v+", "+via)
		return
	}
	h.Set("Via", via)
}

// forward sends req to its origin and the response back. It reports whether the client
// connection may carry another request.
func (cc *clientConn) forward(req *http.Request, conn []string, host string, port uint16) (bool, error) {
	clientKeep := !req.Close && req.ProtoAtLeast(1, 1)
	authority := req.URL.Host
	hasBody := req.Body != nil && req.Body != http.NoBody
	hadCL := len(req.Header["Content-Length"]) > 0
	removeHopByHop(req.Header, conn)
	addVia(req.Header)
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = nil // never add one the client did not send
	}
	key := originKey(host, port)
	reused := cc.origin != nil && cc.origin.key == key
	if !reused {
		cc.setOrigin(nil)
	}
	for attempt := 0; ; attempt++ {
		if cc.origin == nil {
			o, err := cc.dial(host, port)
			if err != nil {
				return false, cc.dialFailed(authority, err)
			}
			cc.setOrigin(o)
		}
		o := cc.origin
		resp, rconn, err := cc.roundTrip(o, req, authority, hasBody, hadCL)
		if err != nil && reused && attempt == 0 && !hasBody && idempotent(req.Method) && retryable(err) {
			// The kept origin connection had been closed by the origin before it answered: a
			// request without a body of an idempotent method is sent again on a fresh one
			// (RFC 9112 §9.3.1).
			cc.setOrigin(nil)
			continue
		}
		if err != nil {
			cc.setOrigin(nil)
			return false, cc.originFailed(authority, err)
		}
		return cc.respond(req, resp, rconn, o, clientKeep)
	}
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// retryable says the origin closed a kept connection before answering (RFC 9112 §9.3.1).
func retryable(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset by peer") || errors.Is(err, errNoResponse)
}

var (
	errNoResponse      = errors.New("forward: origin closed the connection without a response")
	errResponseTimeout = errors.New("forward: origin sent no response header in time")
)

// originFailed answers a request whose origin took it and then failed: 504 for a response
// that did not come in time, 502 for the rest.
func (cc *clientConn) originFailed(dest string, err error) error {
	status := http.StatusBadGateway
	var ne net.Error
	if errors.Is(err, errResponseTimeout) || (errors.As(err, &ne) && ne.Timeout()) {
		status = http.StatusGatewayTimeout
	}
	if errors.Is(err, ErrHeaderTooLarge) || errors.Is(err, ErrCLAndTE) || errors.Is(err, ErrObsFold) ||
		errors.Is(err, ErrContentLength) || errors.Is(err, ErrTransferCoding) || errors.Is(err, ErrHeaderSyntax) {
		err = fmt.Errorf("refused the origin's response: %w", err)
	}
	return cc.refuse(status, fmt.Sprintf("forward: %s: %v", dest, err), nil)
}

// roundTrip writes req to o (its body on a goroutine, so that the origin's 100 Continue and
// early answers get through) and reads the response header, passing 1xx answers on to the
// client. It returns the tokens of the response's Connection fields too.
func (cc *clientConn) roundTrip(o *originConn, req *http.Request, authority string, hasBody, hadCL bool) (resp *http.Response, conn []string, err error) {
	chunked := hasBody && req.ContentLength < 0
	_ = o.c.SetDeadline(time.Time{})
	writeRequestHead(o.bw, req, authority, hasBody, hadCL, chunked)
	if err := o.bw.Flush(); err != nil {
		return nil, nil, err
	}
	body := make(chan error, 1)
	if hasBody {
		go func() { body <- cc.copyRequestBody(o, req, chunked) }()
	} else {
		body <- nil
	}
	defer func() {
		if err != nil && hasBody {
			o.close() // unblocks the body writer
			<-body
		}
	}()
	for {
		_ = o.c.SetReadDeadline(time.Now().Add(cc.cfg.responseTimeout()))
		hdr, rerr := readHeaderGrowing(&o.br, o.c, cc.cfg.maxHeaderBytes())
		if rerr != nil {
			var ne net.Error
			switch {
			case errors.As(rerr, &ne) && ne.Timeout():
				return nil, nil, errResponseTimeout
			case errors.Is(rerr, io.EOF):
				return nil, nil, errNoResponse
			}
			return nil, nil, rerr
		}
		conn, err := checkHeader(hdr)
		if err != nil {
			return nil, nil, err
		}
		resp, err := http.ReadResponse(o.br, req)
		if err != nil {
			return nil, nil, err
		}
		_ = o.c.SetReadDeadline(time.Time{})
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			resp.Body = &bodyWait{ReadCloser: resp.Body, done: body}
			return resp, conn, nil
		}
		if req.ProtoAtLeast(1, 1) { // 1xx only to HTTP/1.1 clients (RFC 9110 §15.2)
			removeHopByHop(resp.Header, conn)
			fmt.Fprintf(cc.bw, "HTTP/1.1 %s\r\n", resp.Status)
			_ = resp.Header.Write(cc.bw)
			_, _ = cc.bw.WriteString("\r\n")
			if err := cc.bw.Flush(); err != nil {
				return nil, nil, err
			}
		}
	}
}

// bodyGrace bounds the wait for a request body's writer once the response is through.
const bodyGrace = time.Second

// bodyWait is a response body that also carries the request body writer's outcome.
type bodyWait struct {
	io.ReadCloser
	done chan error
}

// writeRequestHead writes req's request line and header in origin form for the next hop.
func writeRequestHead(w *bufio.Writer, req *http.Request, authority string, hasBody, hadCL, chunked bool) {
	uri := req.URL.RequestURI()
	if req.Method == http.MethodOptions && (req.URL.Path == "" && req.URL.RawQuery == "") {
		uri = "*" // OPTIONS http://host HTTP/1.1 asks the server itself (RFC 9112 §3.2.4)
	}
	fmt.Fprintf(w, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, uri, authority)
	req.Header.Del("Host")
	_ = req.Header.WriteSubset(w, map[string]bool{"User-Agent": len(req.Header.Values("User-Agent")) == 0})
	switch {
	case chunked:
		_, _ = w.WriteString("Transfer-Encoding: chunked\r\n")
		writeTrailerNames(w, req.Trailer)
	case hasBody || hadCL:
		fmt.Fprintf(w, "Content-Length: %d\r\n", max(req.ContentLength, 0))
	}
	_, _ = w.WriteString("\r\n")
}

// copyRequestBody streams the request body to the origin, chunk-encoded when it came so.
func (cc *clientConn) copyRequestBody(o *originConn, req *http.Request, chunked bool) error {
	err := cc.copyBody(o.bw, o.c, req.Body, chunked, cc.c)
	var re readError
	if errors.As(err, &re) {
		// The client stopped sending its body (gone, or its idle time ran out): no answer can
		// reach it, so the origin's wait for one ends too. Closed, not given a past deadline,
		// which the reader's own response deadline could overwrite.
		_ = o.c.Close()
	}
	if err == nil && chunked {
		err = writeTrailer(o.bw, req.Trailer)
	}
	if err == nil {
		err = o.bw.Flush()
	}
	return err
}

// copyBody copies src to w (flushing after every read, so a stream is not held back), chunk-
// encoding it when chunked; dst is the connection w writes to and srcConn the one src reads
// from, whose deadlines carry the idle timeout.
func (cc *clientConn) copyBody(w *bufio.Writer, dst net.Conn, src io.Reader, chunked bool, srcConn net.Conn) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	idle := cc.cfg.IdleTimeout
	for {
		if idle > 0 {
			_ = srcConn.SetReadDeadline(time.Now().Add(idle))
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			if idle > 0 {
				_ = dst.SetWriteDeadline(time.Now().Add(idle))
			}
			if chunked {
				fmt.Fprintf(w, "%x\r\n", n)
			}
			_, _ = w.Write(buf[:n])
			if chunked {
				_, _ = w.WriteString("\r\n")
			}
			if err := w.Flush(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			if chunked {
				_, _ = w.WriteString("0\r\n")
			}
			return nil
		}
		if rerr != nil {
			return readError{rerr}
		}
	}
}

// copyBufs are copyBody's buffers, shared by every connection: a kept-alive connection
// between requests holds none.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// readError is copyBody's failure to read its source (as opposed to writing its destination).
type readError struct{ error }

func (e readError) Unwrap() error { return e.error }

// writeTrailerNames announces the trailer fields of a chunked body (net/http moves the Trailer
// field of a message it parsed into its Trailer map).
func writeTrailerNames(w *bufio.Writer, t http.Header) {
	if len(t) == 0 {
		return
	}
	names := make([]string, 0, len(t))
	for k := range t {
		names = append(names, k)
	}
	slices.Sort(names)
	fmt.Fprintf(w, "Trailer: %s\r\n", strings.Join(names, ", "))
}

// writeTrailer ends a chunked body: its trailer fields, then the empty line.
func writeTrailer(w *bufio.Writer, t http.Header) error {
	if len(t) > 0 {
		if err := t.Write(w); err != nil {
			return err
		}
	}
	_, err := w.WriteString("\r\n")
	return err
}

// bodyForbidden reports a response that has no body whatever its header says (RFC 9112 §6.3).
func bodyForbidden(req *http.Request, status int) bool {
	return req.Method == http.MethodHead || status/100 == 1 || status == http.StatusNoContent ||
		status == http.StatusNotModified
}

// respond passes the response on to the client and settles both connections. A body of
// unknown length goes to an HTTP/1.1 client chunked (so the client connection stays open),
// to an HTTP/1.0 client delimited by the close.
func (cc *clientConn) respond(req *http.Request, resp *http.Response, conn []string, o *originConn, clientKeep bool) (bool, error) {
	bw := resp.Body.(*bodyWait)
	forbidden := bodyForbidden(req, resp.StatusCode)
	originCL := resp.Header.Values("Content-Length")
	originKeep := !resp.Close && (forbidden || resp.ContentLength >= 0 || len(resp.TransferEncoding) > 0)
	removeHopByHop(resp.Header, conn)
	addVia(resp.Header)
	chunked := false
	switch {
	case forbidden:
		for _, v := range originCL { // a HEAD or 304 answer keeps the length it announces
			resp.Header.Add("Content-Length", v)
		}
	case resp.ContentLength >= 0:
		resp.Header.Set("Content-Length", fmt.Sprint(resp.ContentLength))
	case req.ProtoAtLeast(1, 1):
		chunked = true
	default:
		clientKeep = false
	}
	if cc.isDraining() {
		clientKeep = false
	}
	fmt.Fprintf(cc.bw, "HTTP/1.1 %s\r\n", resp.Status)
	_ = resp.Header.Write(cc.bw)
	if chunked {
		_, _ = cc.bw.WriteString("Transfer-Encoding: chunked\r\n")
		writeTrailerNames(cc.bw, resp.Trailer)
	}
	if !clientKeep {
		_, _ = cc.bw.WriteString("Connection: close\r\n")
	}
	_, _ = cc.bw.WriteString("\r\n")
	var err error
	if !forbidden {
		err = cc.copyBody(cc.bw, cc.c, resp.Body, chunked, o.c)
		if err == nil && chunked {
			err = writeTrailer(cc.bw, resp.Trailer)
		}
	}
	if err == nil {
		err = cc.bw.Flush()
	}
	cc.cfg.Metrics.request(outcomeForwarded)
	cc.cfg.log().Debug("plain-HTTP request forwarded", "method", req.Method, "origin", o.key, "status", resp.StatusCode)
	// The request body must be in before either connection is reused; an origin that
	// answered first (an early 413) never gets to read it, so the exchange ends here.
	// The request body must be in before either connection is reused. Its writer normally
	// finished before the origin answered; if not, it gets a bounded moment to (an origin that
	// answered early, such as a 413, while the client still sends, gets its connections closed).
	select {
	case berr := <-bw.done:
		if berr != nil {
			clientKeep, originKeep = false, false
		}
	default:
		grace := time.Now().Add(bodyGrace)
		_ = cc.c.SetReadDeadline(grace)
		_ = o.c.SetWriteDeadline(grace)
		if <-bw.done != nil {
			clientKeep, originKeep = false, false
		}
		_ = cc.c.SetReadDeadline(time.Time{})
		_ = o.c.SetWriteDeadline(time.Time{})
	}
	if err != nil || !originKeep {
		cc.setOrigin(nil)
	}
	if err != nil {
		return false, err
	}
	return clientKeep, nil
}
