// Package socks holds the wire formats of the outbound proxy: SOCKS5 (RFC 1928) with
// username/password authentication (RFC 1929), SOCKS4 and SOCKS4a, and HTTP/1.1 CONNECT.
//
// Protocol details only; no sockets. Parsers work incrementally over a byte slice and return
// the message, the number of bytes it took, and an error. Given too few bytes a parser returns
// [ErrNeedMore] and consumes nothing (n == 0), which fits a Peek/Discard event loop: peek at
// what has arrived, parse, and discard n bytes only on success. Every other error is final: the
// caller answers it and closes. Parsers validate fields as soon as they arrive, so a bad message
// fails before it is complete.
//
// Which reply code answers which error is decided by the package that answers clients
// (loop.ReplyFor), whose table also names the resolver's and NAT64's sentinels. This package
// imports no other package of the module, so the fuzzed parsers compile without the DNS stack
// or a metrics client (leaf_test.go holds it to that).
//
// The UDP ASSOCIATE datagram header (RFC 1928 §7) is parsed from a whole datagram instead:
// ParseUDPHeader never asks for more bytes, a short datagram is malformed.
//
// Encoders are append-style (AppendX(dst, ...) []byte) so callers can reuse buffers. The server
// side (replies) is what the proxy needs; the client side (requests, and parsers for replies)
// exists for tests, fuzzing and the fakes in package sockstest.
//
// Parsed messages never alias the input: strings are copied, so the caller may reuse its buffer.
package socks
