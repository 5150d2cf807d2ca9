package loop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"

	"github.com/nat464/nat464-sidecar/socks"
)

// Checker validates proxy credentials (config.LoadAuthFile's result implements it).
type Checker interface {
	Check(user, pass string) bool
}

// Auth holds the proxy credentials; Set swaps them atomically (SIGHUP reload). A nil *Auth or
// one never Set means no authentication.
type Auth struct {
	c atomic.Pointer[Checker]
}

// Set replaces the credentials.
func (a *Auth) Set(c Checker) { a.c.Store(&c) }

func (a *Auth) get() Checker {
	if a == nil {
		return nil
	}
	if p := a.c.Load(); p != nil {
		return *p
	}
	return nil
}

type state uint8

const (
	stDetect state = iota
	stGreeting
	stAuth
	stRequest
	stSOCKS4
	stHTTP
	stDone
)

// errClose ends a handshake after its reply was queued.
var errClose = errors.New("loop: handshake refused")

// session is one proxy client's handshake, fed the bytes received so far. It is confined to one
// goroutine (the conn's event loop), except fail, which the timeout sweep may call. It reports
// its outcome to the connection's owner.
type session struct {
	o     *owner
	st    state
	proto socks.Protocol
	auth  Checker
}

func newSession(cfg *Config, o *owner) *session {
	return &session{o: o, auth: cfg.Auth.get()}
}

// request is a complete proxy request: what the client wants to reach and how to answer it.
type request struct {
	proto socks.Protocol
	dest  socks.Addr
	// forward marks a plain-HTTP request (absolute form): nothing is consumed, and the
	// connection goes to the forwarder with every byte read so far.
	forward bool
	// associate marks a SOCKS5 UDP ASSOCIATE (CMD 03): dest is where the client will send its
	// datagrams from (all zeros if unknown), and the connection goes to the association
	// (associations.serve), which answers it.
	associate bool
}

func (r *request) String() string { return r.dest.String() }

func (r *request) host() string {
	if r.dest.IsName() {
		return r.dest.Host
	}
	return r.dest.IP.String()
}

var zeroBind = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)

// successReply is sent when the dial succeeded. SOCKS5 binds to IPv4 0.0.0.0:0: some clients
// mis-parse an IPv6 BND.ADDR (SPEC-NOTES §5.4).
func (r *request) successReply() []byte {
	switch r.proto {
	case socks.ProtocolSOCKS5:
		return socks.AppendReply(nil, socks.ReplySucceeded, zeroBind)
	case socks.ProtocolSOCKS4:
		return socks.AppendSOCKS4Reply(nil, socks.Reply4Granted)
	}
	return socks.AppendHTTPResponse(nil, socks.StatusOK)
}

// failureReply is the answer to a failed dial, in the client's protocol.
func (r *request) failureReply(err error) []byte {
	return failureReply(r.proto, err)
}

func failureReply(p socks.Protocol, err error) []byte {
	switch p {
	case socks.ProtocolSOCKS5:
		return socks.AppendReply(nil, ReplyFor(err), zeroBind)
	case socks.ProtocolSOCKS4:
		return socks.AppendSOCKS4Reply(nil, SOCKS4ReplyFor(err))
	case socks.ProtocolHTTP:
		return socks.AppendHTTPError(nil, HTTPStatusFor(err), httpDetail(err))
	}
	return nil
}

func replyName(p socks.Protocol, err error) string {
	switch p {
	case socks.ProtocolSOCKS5:
		if err == nil {
			return socks.ReplySucceeded.String()
		}
		return ReplyFor(err).String()
	case socks.ProtocolSOCKS4:
		if err == nil {
			return socks.Reply4Granted.String()
		}
		return SOCKS4ReplyFor(err).String()
	}
	if err == nil {
		return "200"
	}
	return strconv.Itoa(HTTPStatusFor(err))
}

// feed consumes as many complete handshake messages from in as it can. It returns how many bytes
// it consumed, what to send back now, and the request once it is complete. A non-nil error means
// the handshake is over: send out, then close.
func (s *session) feed(in []byte) (n int, out []byte, req *request, err error) {
	if s.st == stDetect && len(in) > 0 {
		if _, _, _, err := s.detect(in[0]); err != nil {
			s.st = stDone
			return 0, nil, nil, err
		}
	}
	for n < len(in) && s.st != stDone {
		used, o, r, e := s.step(in[n:])
		n += used
		out = append(out, o...)
		if e != nil {
			s.st = stDone
			return n, out, nil, e
		}
		if r != nil {
			s.st = stDone
			return n, out, r, nil
		}
		if used == 0 {
			break
		}
	}
	return n, out, nil, nil
}

// step parses one message. used == 0 with no error means more bytes are needed.
func (s *session) step(in []byte) (used int, out []byte, req *request, err error) {
	switch s.st {
	case stGreeting:
		return s.greeting(in)
	case stAuth:
		return s.userPass(in)
	case stRequest:
		return s.request5(in)
	case stSOCKS4:
		return s.request4(in)
	case stHTTP:
		return s.httpConnect(in)
	}
	return 0, nil, nil, errClose
}

func (s *session) detect(first byte) (int, []byte, *request, error) {
	s.proto = socks.Detect(first)
	switch s.proto {
	case socks.ProtocolSOCKS5:
		s.st = stGreeting
	case socks.ProtocolSOCKS4:
		s.st = stSOCKS4
	case socks.ProtocolHTTP:
		s.st = stHTTP
	default:
		return 0, nil, nil, s.refuse(RejectProtocol, "unknown", fmt.Errorf("loop: unknown proxy protocol (first byte 0x%02x)", first))
	}
	return 0, nil, nil, nil
}

func (s *session) greeting(in []byte) (int, []byte, *request, error) {
	g, n, err := socks.ParseGreeting(in)
	if errors.Is(err, socks.ErrNeedMore) {
		return 0, nil, nil, nil
	}
	if err != nil {
		return n, socks.AppendMethodSelection(nil, socks.MethodNoAcceptable), nil, s.refuse(RejectProtocol, "malformed", err)
	}
	var m socks.Method
	if s.auth != nil {
		m = g.Choose(socks.MethodUserPass)
	} else {
		// Without credentials configured, a client that only offers user/password is let in
		// with any credentials.
		m = g.Choose(socks.MethodNoAuth, socks.MethodUserPass)
	}
	out := socks.AppendMethodSelection(nil, m)
	switch m {
	case socks.MethodNoAuth:
		s.st = stRequest
	case socks.MethodUserPass:
		s.st = stAuth
	default:
		return n, out, nil, s.refuse(RejectAuth, "no_acceptable_method", socks.ErrAuth)
	}
	return n, out, nil, nil
}

func (s *session) userPass(in []byte) (int, []byte, *request, error) {
	up, n, err := socks.ParseUserPass(in)
	if errors.Is(err, socks.ErrNeedMore) {
		return 0, nil, nil, nil
	}
	if err != nil {
		return n, socks.AppendAuthStatus(nil, false), nil, s.refuse(RejectProtocol, "malformed", err)
	}
	if s.auth != nil && !s.auth.Check(up.Username, up.Password) {
		return n, socks.AppendAuthStatus(nil, false), nil, s.refuse(RejectAuth, "auth_failed", socks.ErrAuth)
	}
	s.st = stRequest
	return n, socks.AppendAuthStatus(nil, true), nil, nil
}

func (s *session) request5(in []byte) (int, []byte, *request, error) {
	r, n, err := socks.ParseRequest(in)
	if errors.Is(err, socks.ErrNeedMore) {
		return 0, nil, nil, nil
	}
	if err == nil && r.Command != socks.CmdConnect && r.Command != socks.CmdUDPAssociate {
		err = fmt.Errorf("%w: %s", socks.ErrCommandNotSupported, r.Command)
	}
	if err != nil {
		return n, failureReply(s.proto, err), nil, s.refuse(RejectProtocol, replyName(s.proto, err), err)
	}
	return n, nil, &request{proto: s.proto, dest: r.Dest, associate: r.Command == socks.CmdUDPAssociate}, nil
}

func (s *session) request4(in []byte) (int, []byte, *request, error) {
	r, n, err := socks.ParseSOCKS4(in)
	if errors.Is(err, socks.ErrNeedMore) {
		return 0, nil, nil, nil
	}
	reason := RejectProtocol
	if err == nil && r.Command != socks.CmdConnect {
		err = fmt.Errorf("%w: %s", socks.ErrCommandNotSupported, r.Command)
	}
	if err == nil && s.auth != nil {
		err, reason = fmt.Errorf("%w: socks4 carries no password; use socks5 or http", socks.ErrAuth), RejectAuth
	}
	if err != nil {
		return n, failureReply(s.proto, err), nil, s.refuse(reason, replyName(s.proto, err), err)
	}
	return n, nil, &request{proto: s.proto, dest: r.Dest}, nil
}

func (s *session) httpConnect(in []byte) (int, []byte, *request, error) {
	r, n, err := socks.ParseHTTPConnect(in)
	if errors.Is(err, socks.ErrNeedMore) {
		return 0, nil, nil, nil
	}
	if errors.Is(err, socks.ErrNotConnect) {
		return 0, nil, &request{proto: s.proto, forward: true}, nil
	}
	reason := RejectProtocol
	if err == nil && s.auth != nil && (!r.HasAuth || !s.auth.Check(r.User, r.Password)) {
		err, reason = socks.ErrAuth, RejectAuth
	}
	if err != nil {
		return n, failureReply(s.proto, err), nil, s.refuse(reason, replyName(s.proto, err), err)
	}
	return n, nil, &request{proto: s.proto, dest: r.Dest}, nil
}

// refuse reports a handshake that ends without a dial to the owner, which counts and logs it.
func (s *session) refuse(reason, reply string, err error) error {
	s.o.refused(s.proto.String(), reason, reply, err)
	return errClose
}

// fail records a handshake cut by the front end (timeout, size cap). Safe from any goroutine.
func (s *session) fail(reason string) { s.o.cut(reason) }

// dial reaches a proxy request's destination within the dial timeout; the owner counts the
// outcome (Connected).
func dial(ctx context.Context, cfg *Config, req *request) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.dialTimeout())
	defer cancel()
	return cfg.dialer().DialContext(ctx, req.host(), req.dest.Port)
}

// DirectDialer is a Dialer that can plan the one connect of an IP literal, so that the front end
// makes it without a dial goroutine (splice.Connect); eyeballs.Dialer is one. See
// eyeballs.Dialer.Direct for the contract.
type DirectDialer interface {
	Direct(host string, port uint16) (target netip.AddrPort, done func(error), ok bool, err error)
}
