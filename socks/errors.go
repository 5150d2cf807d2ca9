package socks

import "errors"

// Sentinel errors. Parsers wrap them with detail (errors.Is classifies); the mapping to reply
// codes is loop.ReplyFor's.
var (
	// ErrNeedMore says the input ends before the message does; nothing was consumed.
	ErrNeedMore = errors.New("socks: need more bytes")
	// ErrVersion is a message whose version byte is not the one this parser reads.
	ErrVersion = errors.New("socks: unsupported protocol version")
	// ErrMalformed is a message that breaks its grammar (answered with REP 01, CD 91, HTTP 400).
	ErrMalformed = errors.New("socks: malformed message")
	// ErrCommandNotSupported is an unknown SOCKS command (REP 07); callers also wrap it to refuse
	// commands they parse but do not implement, such as BIND.
	ErrCommandNotSupported = errors.New("socks: command not supported")
	// ErrAddrTypeNotSupported is an unknown ATYP, an empty or invalid host name (REP 08).
	ErrAddrTypeNotSupported = errors.New("socks: address type not supported")
	// ErrMethodNotAllowed is an HTTP request the proxy will not serve (HTTP 405).
	ErrMethodNotAllowed = errors.New("socks: http method not allowed")
	// ErrNotConnect is an HTTP request whose method is not CONNECT: a plain-HTTP proxy request
	// (absolute form), which the proxy port forwards (package forward), not a tunnel.
	ErrNotConnect = errors.New("socks: http request is not CONNECT")
	// ErrHeaderTooLarge is an HTTP request whose header block exceeds MaxHTTPHeaderBytes.
	ErrHeaderTooLarge = errors.New("socks: http request header too large")
	// ErrPolicy is a destination the proxy refuses (REP 02, HTTP 403).
	ErrPolicy = errors.New("socks: destination not allowed by policy")
	// ErrAuth is missing or wrong credentials (HTTP 407; SOCKS5 answers it in the RFC 1929
	// status instead).
	ErrAuth = errors.New("socks: authentication failed")
)
