package socks

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
)

// MaxHTTPHeaderBytes caps an HTTP CONNECT request: request line and headers up to and including
// the empty line. A longer one fails with ErrHeaderTooLarge.
const MaxHTTPHeaderBytes = 8 << 10

// HTTPRealm is the realm of the Basic challenge sent with 407.
const HTTPRealm = "nat464"

// HTTPConnect is an HTTP/1.x CONNECT request (RFC 9110 §9.3.6).
type HTTPConnect struct {
	Dest Addr
	// HasAuth says a Proxy-Authorization header with the Basic scheme was present; User and
	// Password hold its decoded credentials. Other schemes are ignored (HasAuth stays false).
	HasAuth  bool
	User     string
	Password string
}

// ParseHTTPConnect parses `CONNECT host:port HTTP/1.1` (or HTTP/1.0) and the header lines up to
// the first empty one. Lines may end in CRLF or a bare LF. The authority must carry a port; an
// IPv6 literal must be in brackets. Bytes after the empty line are not consumed: they are the
// client's first tunnel bytes. Errors: ErrNotConnect for another method, as soon as the
// request line is in (the caller forwards it as a plain-HTTP proxy request, or answers 405),
// ErrHeaderTooLarge beyond MaxHTTPHeaderBytes, ErrMalformed or ErrAddrTypeNotSupported for the
// rest (answer 400).
func ParseHTTPConnect(b []byte) (HTTPConnect, int, error) {
	lim := b
	if len(lim) > MaxHTTPHeaderBytes {
		lim = lim[:MaxHTTPHeaderBytes]
	}
	first := bytes.IndexByte(lim, '\n')
	if first < 0 {
		return HTTPConnect{}, 0, needMoreHTTP(b)
	}
	var req HTTPConnect
	if err := parseRequestLine(trimCR(lim[:first]), &req); err != nil {
		return HTTPConnect{}, 0, err
	}
	sawAuth := false
	for start := first + 1; ; {
		i := bytes.IndexByte(lim[start:], '\n')
		if i < 0 {
			return HTTPConnect{}, 0, needMoreHTTP(b)
		}
		line := trimCR(lim[start : start+i])
		start += i + 1
		if len(line) == 0 {
			return req, start, nil
		}
		isAuth, err := parseHeader(line, &req)
		if err != nil {
			return HTTPConnect{}, 0, err
		}
		if isAuth && sawAuth {
			return HTTPConnect{}, 0, fmt.Errorf("%w: http: Proxy-Authorization given twice", ErrMalformed)
		}
		sawAuth = sawAuth || isAuth
	}
}

func needMoreHTTP(b []byte) error {
	if len(b) >= MaxHTTPHeaderBytes {
		return fmt.Errorf("%w: no end of header within %d bytes", ErrHeaderTooLarge, MaxHTTPHeaderBytes)
	}
	return ErrNeedMore
}

func trimCR(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		return line[:n-1]
	}
	return line
}

func parseRequestLine(line []byte, req *HTTPConnect) error {
	method, rest, ok1 := bytes.Cut(line, []byte{' '})
	target, proto, ok2 := bytes.Cut(rest, []byte{' '})
	if !IsToken(method) {
		return fmt.Errorf("%w: http: bad request line", ErrMalformed)
	}
	if string(method) != "CONNECT" {
		return fmt.Errorf("%w: %.20q", ErrNotConnect, method)
	}
	if !ok1 || !ok2 || bytes.IndexByte(proto, ' ') >= 0 {
		return fmt.Errorf("%w: http: bad request line", ErrMalformed)
	}
	if string(proto) != "HTTP/1.1" && string(proto) != "HTTP/1.0" {
		return fmt.Errorf("%w: http: unsupported protocol %.20q", ErrMalformed, proto)
	}
	dst, err := parseAuthority(target)
	if err != nil {
		return err
	}
	req.Dest = dst
	return nil
}

// parseAuthority parses host:port or [v6]:port.
func parseAuthority(t []byte) (Addr, error) {
	i := bytes.LastIndexByte(t, ':')
	if i < 0 {
		return Addr{}, fmt.Errorf("%w: http: CONNECT target without port", ErrMalformed)
	}
	host, port := t[:i], t[i+1:]
	p, ok := parsePort(port)
	if !ok {
		return Addr{}, fmt.Errorf("%w: http: bad port in CONNECT target", ErrMalformed)
	}
	bracketed := len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']'
	if bracketed {
		host = host[1 : len(host)-1]
	}
	a, err := parseHost(host)
	if err != nil {
		return Addr{}, err
	}
	if bracketed != (a.IP.IsValid() && a.IP.Is6()) {
		return Addr{}, fmt.Errorf("%w: http: IPv6 literals and only they go in brackets", ErrMalformed)
	}
	a.Port = p
	return a, nil
}

func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return uint16(n), n > 0 && n <= 65535
}

// parseHeader checks one header line and decodes Proxy-Authorization into req. It reports
// whether the line was a Proxy-Authorization header.
func parseHeader(line []byte, req *HTTPConnect) (bool, error) {
	name, value, ok := bytes.Cut(line, []byte{':'})
	if !ok || !IsToken(name) {
		return false, fmt.Errorf("%w: http: bad header line", ErrMalformed)
	}
	if !bytes.EqualFold(name, []byte("Proxy-Authorization")) {
		return false, nil
	}
	scheme, cred, _ := bytes.Cut(bytes.TrimSpace(value), []byte{' '})
	if !bytes.EqualFold(scheme, []byte("Basic")) {
		return true, nil
	}
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(cred)))
	n, err := base64.StdEncoding.Decode(raw, bytes.TrimSpace(cred))
	if err != nil {
		return true, fmt.Errorf("%w: http: bad Basic credentials", ErrMalformed)
	}
	user, pass, ok := bytes.Cut(raw[:n], []byte{':'})
	if !ok {
		return true, fmt.Errorf("%w: http: Basic credentials without ':'", ErrMalformed)
	}
	req.HasAuth, req.User, req.Password = true, string(user), string(pass)
	return true, nil
}

// IsToken reports whether b is a non-empty RFC 9110 token (a method, a field name).
func IsToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0:
		default:
			return false
		}
	}
	return true
}

// HTTP statuses the proxy answers with.
const (
	StatusOK                  = 200
	StatusBadRequest          = 400
	StatusForbidden           = 403
	StatusMethodNotAllowed    = 405
	StatusProxyAuthRequired   = 407
	StatusRequestTimeout      = 408
	StatusInternalServerError = 500
	StatusBadGateway          = 502
	StatusGatewayTimeout      = 504
)

var statusText = map[int]string{
	StatusBadRequest:          "Bad Request",
	StatusForbidden:           "Forbidden",
	StatusMethodNotAllowed:    "Method Not Allowed",
	StatusProxyAuthRequired:   "Proxy Authentication Required",
	StatusRequestTimeout:      "Request Timeout",
	StatusInternalServerError: "Internal Server Error",
	StatusBadGateway:          "Bad Gateway",
	StatusGatewayTimeout:      "Gateway Timeout",
}

// AppendHTTPResponse appends the answer to a CONNECT request. 200 is
// "HTTP/1.1 200 Connection established" with no headers, after which the tunnel starts. The
// error statuses (400, 403, 405, 407, 408, 500, 502, 504; any other is sent as 500) carry a short
// text body and Connection: close; 405 adds Allow: CONNECT and 407 a Basic challenge
// (Proxy-Authenticate: Basic realm="nat464").
func AppendHTTPResponse(dst []byte, status int) []byte {
	return AppendHTTPError(dst, status, "")
}

// AppendHTTPError is AppendHTTPResponse with detail, a line that says why, after the status
// text in the body (a policy refusal names its rule there). Control characters in detail are
// replaced by spaces; it is cut at 512 bytes. 200 ignores detail.
func AppendHTTPError(dst []byte, status int, detail string) []byte {
	if status == StatusOK {
		return append(dst, "HTTP/1.1 200 Connection established\r\n\r\n"...)
	}
	text, ok := statusText[status]
	if !ok {
		status, text = StatusInternalServerError, statusText[StatusInternalServerError]
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, text...)
	dst = append(dst, "\r\n"...)
	switch status {
	case StatusMethodNotAllowed:
		dst = append(dst, "Allow: CONNECT\r\n"...)
	case StatusProxyAuthRequired:
		dst = append(dst, "Proxy-Authenticate: Basic realm=\""+HTTPRealm+"\"\r\n"...)
	}
	if len(detail) > maxHTTPDetail {
		detail = detail[:maxHTTPDetail]
	}
	n := len(text) + 1
	if detail != "" {
		n += len(detail) + 1
	}
	dst = append(dst, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, "\r\nConnection: close\r\n\r\n"...)
	dst = append(dst, text...)
	dst = append(dst, '\n')
	if detail == "" {
		return dst
	}
	for i := 0; i < len(detail); i++ {
		c := detail[i]
		if c < 0x20 || c == 0x7f {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\n')
}

// maxHTTPDetail bounds AppendHTTPError's detail line.
const maxHTTPDetail = 512
