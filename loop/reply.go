package loop

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/policy"
	"github.com/nat464/nat464-sidecar/resolver"
	"github.com/nat464/nat464-sidecar/socks"
)

// The error -> reply-code table. It lives here, in the package that answers clients, and not in
// socks: its rows name the sentinels of resolver and nat64, and socks stays a leaf (wire formats
// only, nothing of the DNS stack or the metrics client; socks/leaf_test.go checks it).

// class is what went wrong, independent of the protocol that reports it.
type class uint8

const (
	classGeneral class = iota
	classPolicy
	classNetUnreachable
	classHostUnreachable
	classRefused
	classTimeout
	classDNSTimeout
	classCommand
	classAddrType
	classAuth
	classBadRequest
	classMethod
)

// answers gives each class its SOCKS5 REP, SOCKS4 CD and HTTP status.
var answers = [...]struct {
	rep    socks.Reply
	rep4   socks.Reply4
	status int
}{
	classGeneral:         {socks.ReplyGeneralFailure, socks.Reply4Rejected, socks.StatusBadGateway},
	classPolicy:          {socks.ReplyNotAllowed, socks.Reply4Rejected, socks.StatusForbidden},
	classNetUnreachable:  {socks.ReplyNetworkUnreachable, socks.Reply4Rejected, socks.StatusBadGateway},
	classHostUnreachable: {socks.ReplyHostUnreachable, socks.Reply4Rejected, socks.StatusBadGateway},
	classRefused:         {socks.ReplyConnectionRefused, socks.Reply4Rejected, socks.StatusBadGateway},
	classTimeout:         {socks.ReplyTTLExpired, socks.Reply4Rejected, socks.StatusGatewayTimeout},
	classDNSTimeout:      {socks.ReplyHostUnreachable, socks.Reply4Rejected, socks.StatusGatewayTimeout},
	classCommand:         {socks.ReplyCommandNotSupported, socks.Reply4Rejected, socks.StatusMethodNotAllowed},
	classAddrType:        {socks.ReplyAddrTypeUnsupported, socks.Reply4Rejected, socks.StatusBadRequest},
	classAuth:            {socks.ReplyGeneralFailure, socks.Reply4Rejected, socks.StatusProxyAuthRequired},
	classBadRequest:      {socks.ReplyGeneralFailure, socks.Reply4Rejected, socks.StatusBadRequest},
	classMethod:          {socks.ReplyCommandNotSupported, socks.Reply4Rejected, socks.StatusMethodNotAllowed},
}

// ReplyFor maps a handshake, resolve or dial error to a SOCKS5 reply code (SPEC-NOTES §5.3).
// The first matching row wins:
//
//	00 succeeded                   nil
//	01 general failure             socks.ErrAuth, socks.ErrMalformed, socks.ErrVersion,
//	                               socks.ErrHeaderTooLarge
//	02 not allowed by ruleset      socks.ErrPolicy, policy.ErrDenied (the egress policy),
//	                               nat64.ErrPolicy
//	07 command not supported       socks.ErrCommandNotSupported, socks.ErrMethodNotAllowed
//	08 address type not supported  socks.ErrAddrTypeNotSupported
//	03 network unreachable         nat64.ErrNoPrefix
//	04 host unreachable            resolver.ErrTimeout (no nameserver answered: the host could
//	                               not be found, so not 06, which says a connect timed out)
//	04 host unreachable            resolver NXDOMAIN, NODATA, SERVFAIL, REFUSED, bad response,
//	                               bad name (SOCKS5 has no "name not found" code)
//	05 connection refused          ECONNREFUSED, ECONNRESET
//	03 network unreachable         ENETUNREACH, ENETDOWN
//	04 host unreachable            EHOSTUNREACH, EHOSTDOWN
//	02 not allowed by ruleset      EACCES, EPERM (a firewall rule)
//	06 TTL expired                 ETIMEDOUT, context.DeadlineExceeded, os.ErrDeadlineExceeded
//	04 host unreachable            *net.DNSError with IsNotFound
//	06 TTL expired                 any net.Error whose Timeout() is true (Dante's choice for timeouts)
//	01 general failure             anything else (context.Canceled, EMFILE, ...)
//
// Classification uses errors.Is and errors.As only, never the error text, so wrapping
// (fmt.Errorf %w, *net.OpError around *os.SyscallError, errors.Join) does not matter.
func ReplyFor(err error) socks.Reply {
	if err == nil {
		return socks.ReplySucceeded
	}
	return answers[classify(err)].rep
}

// SOCKS4ReplyFor maps err to a SOCKS4 reply: 90 for nil, 91 for every failure (SOCKS4 has no
// finer codes; 92 and 93 are about identd, which the proxy does not use).
func SOCKS4ReplyFor(err error) socks.Reply4 {
	if err == nil {
		return socks.Reply4Granted
	}
	return answers[classify(err)].rep4
}

// HTTPStatusFor maps err to the status answering a CONNECT: 200 for nil; 403 policy (the
// egress policy's refusal names its rule in the body: failureReply); 405
// non-CONNECT method or unsupported command; 400 malformed request, oversized header or bad
// address; 407 socks.ErrAuth; 504 timeouts, a nameserver's included; 502 refused, unreachable,
// other resolve failures and the rest.
func HTTPStatusFor(err error) int {
	if err == nil {
		return socks.StatusOK
	}
	return answers[classify(err)].status
}

// sentinels are checked in order; the first match wins.
var sentinels = [...]struct {
	err error
	c   class
}{
	{socks.ErrAuth, classAuth},
	{socks.ErrPolicy, classPolicy},
	{policy.ErrDenied, classPolicy},
	{nat64.ErrPolicy, classPolicy},
	{nat64.ErrNoPrefix, classNetUnreachable},
	{socks.ErrCommandNotSupported, classCommand},
	{socks.ErrMethodNotAllowed, classMethod},
	{socks.ErrAddrTypeNotSupported, classAddrType},
	{socks.ErrHeaderTooLarge, classBadRequest},
	{socks.ErrMalformed, classBadRequest},
	{socks.ErrVersion, classBadRequest},
	{socks.ErrNeedMore, classBadRequest},
	// Before the negative answers: when one family timed out and the other had no records,
	// the timed-out family may have held the address.
	{resolver.ErrTimeout, classDNSTimeout},
	{resolver.ErrNXDomain, classHostUnreachable},
	{resolver.ErrNoData, classHostUnreachable},
	{resolver.ErrServFail, classHostUnreachable},
	{resolver.ErrRefused, classHostUnreachable},
	{resolver.ErrBadResponse, classHostUnreachable},
	{resolver.ErrBadName, classHostUnreachable},
	{syscall.ECONNREFUSED, classRefused},
	{syscall.ECONNRESET, classRefused},
	{syscall.ENETUNREACH, classNetUnreachable},
	{syscall.ENETDOWN, classNetUnreachable},
	{syscall.EHOSTUNREACH, classHostUnreachable},
	{syscall.EHOSTDOWN, classHostUnreachable},
	{syscall.EACCES, classPolicy},
	{syscall.EPERM, classPolicy},
	{syscall.ETIMEDOUT, classTimeout},
	{context.DeadlineExceeded, classTimeout},
	{os.ErrDeadlineExceeded, classTimeout},
}

func classify(err error) class {
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.c
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return classHostUnreachable
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return classTimeout
	}
	return classGeneral
}
