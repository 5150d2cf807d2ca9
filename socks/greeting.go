package socks

import "fmt"

// Greeting is a SOCKS5 client's first message (RFC 1928 §3): the methods it offers.
// The zero Greeting offers nothing.
type Greeting struct {
	offered [4]uint64 // bit set of methods
}

// Offers reports whether the client offered m.
func (g Greeting) Offers(m Method) bool { return g.offered[m>>6]&(1<<(m&63)) != 0 }

// Choose returns the first of prefs (the server's order of preference) the client offered, or
// MethodNoAcceptable.
func (g Greeting) Choose(prefs ...Method) Method {
	for _, m := range prefs {
		if g.Offers(m) {
			return m
		}
	}
	return MethodNoAcceptable
}

// Methods returns the offered methods in ascending order.
func (g Greeting) Methods() []Method {
	var ms []Method
	for i := 0; i < 256; i++ {
		if g.Offers(Method(i)) {
			ms = append(ms, Method(i))
		}
	}
	return ms
}

func (g *Greeting) add(m Method) { g.offered[m>>6] |= 1 << (m & 63) }

// ParseGreeting parses VER=5 | NMETHODS | METHODS. NMETHODS must be at least 1.
func ParseGreeting(b []byte) (Greeting, int, error) {
	var g Greeting
	if len(b) < 1 {
		return g, 0, ErrNeedMore
	}
	if b[0] != Version5 {
		return g, 0, fmt.Errorf("%w: greeting version 0x%02x, want 0x05", ErrVersion, b[0])
	}
	if len(b) < 2 {
		return g, 0, ErrNeedMore
	}
	n := int(b[1])
	if n == 0 {
		return g, 0, fmt.Errorf("%w: greeting offers no methods", ErrMalformed)
	}
	if len(b) < 2+n {
		return g, 0, ErrNeedMore
	}
	for _, m := range b[2 : 2+n] {
		g.add(Method(m))
	}
	return g, 2 + n, nil
}

// AppendMethodSelection appends the server's answer to a greeting: VER=5 | METHOD.
func AppendMethodSelection(dst []byte, m Method) []byte {
	return append(dst, Version5, byte(m))
}

// UserPass is an RFC 1929 username/password request.
type UserPass struct {
	Username string
	Password string
}

// ParseUserPass parses VER=1 | ULEN | UNAME | PLEN | PASSWD. RFC 1929 wants both fields 1..255
// bytes long; empty ones are accepted here (some clients send an empty password) and left to the
// credential check to refuse.
func ParseUserPass(b []byte) (UserPass, int, error) {
	if len(b) < 1 {
		return UserPass{}, 0, ErrNeedMore
	}
	if b[0] != AuthVersion {
		return UserPass{}, 0, fmt.Errorf("%w: auth subnegotiation version 0x%02x, want 0x01", ErrVersion, b[0])
	}
	if len(b) < 2 {
		return UserPass{}, 0, ErrNeedMore
	}
	ulen := int(b[1])
	if len(b) < 2+ulen+1 {
		return UserPass{}, 0, ErrNeedMore
	}
	plen := int(b[2+ulen])
	end := 3 + ulen + plen
	if len(b) < end {
		return UserPass{}, 0, ErrNeedMore
	}
	return UserPass{Username: string(b[2 : 2+ulen]), Password: string(b[3+ulen : end])}, end, nil
}

// Auth status values for AppendAuthStatus (RFC 1929: zero is success, anything else failure).
const (
	AuthSuccess = 0x00
	AuthFailure = 0x01
)

// AppendAuthStatus appends the RFC 1929 answer: VER=1 | STATUS (AuthSuccess when ok). After a
// failure the server must close the connection.
func AppendAuthStatus(dst []byte, ok bool) []byte {
	status := byte(AuthFailure)
	if ok {
		status = AuthSuccess
	}
	return append(dst, AuthVersion, status)
}
