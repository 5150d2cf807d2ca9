package loop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/resolver"
	"github.com/nat464/nat464-sidecar/socks"
)

// timeoutErr is a net.Error that only says it timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout-ish" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// dialErr wraps errno the way net.Dial does: *net.OpError around *os.SyscallError.
func dialErr(errno error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
}

var mappingCases = []struct {
	name   string
	err    error
	rep    socks.Reply
	rep4   socks.Reply4
	status int
}{
	{"nil", nil, socks.ReplySucceeded, socks.Reply4Granted, 200},
	{"refused", syscall.ECONNREFUSED, socks.ReplyConnectionRefused, socks.Reply4Rejected, 502},
	{"refused in OpError", dialErr(syscall.ECONNREFUSED), socks.ReplyConnectionRefused, socks.Reply4Rejected, 502},
	{"refused wrapped twice", fmt.Errorf("eyeballs: all attempts failed: %w", dialErr(syscall.ECONNREFUSED)), socks.ReplyConnectionRefused, socks.Reply4Rejected, 502},
	{"reset", dialErr(syscall.ECONNRESET), socks.ReplyConnectionRefused, socks.Reply4Rejected, 502},
	{"net unreachable", dialErr(syscall.ENETUNREACH), socks.ReplyNetworkUnreachable, socks.Reply4Rejected, 502},
	{"net down", syscall.ENETDOWN, socks.ReplyNetworkUnreachable, socks.Reply4Rejected, 502},
	{"host unreachable", dialErr(syscall.EHOSTUNREACH), socks.ReplyHostUnreachable, socks.Reply4Rejected, 502},
	{"host down", syscall.EHOSTDOWN, socks.ReplyHostUnreachable, socks.Reply4Rejected, 502},
	{"etimedout", dialErr(syscall.ETIMEDOUT), socks.ReplyTTLExpired, socks.Reply4Rejected, 504},
	{"deadline", context.DeadlineExceeded, socks.ReplyTTLExpired, socks.Reply4Rejected, 504},
	{"deadline wrapped", fmt.Errorf("dial: %w", context.DeadlineExceeded), socks.ReplyTTLExpired, socks.Reply4Rejected, 504},
	{"os deadline", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, socks.ReplyTTLExpired, socks.Reply4Rejected, 504},
	{"net.Error timeout", fmt.Errorf("x: %w", timeoutErr{}), socks.ReplyTTLExpired, socks.Reply4Rejected, 504},
	{"dns timeout", &net.DNSError{Err: "timeout", IsTimeout: true}, socks.ReplyTTLExpired, socks.Reply4Rejected, 504},
	{"dns not found", &net.DNSError{Err: "no such host", IsNotFound: true}, socks.ReplyHostUnreachable, socks.Reply4Rejected, 502},
	{"nxdomain", fmt.Errorf("lookup x: %w", resolver.ErrNXDomain), socks.ReplyHostUnreachable, socks.Reply4Rejected, 502},
	{"nodata", resolver.ErrNoData, socks.ReplyHostUnreachable, socks.Reply4Rejected, 502},
	{"servfail", fmt.Errorf("q: %w", resolver.ErrServFail), socks.ReplyHostUnreachable, socks.Reply4Rejected, 502},
	{"dns refused", resolver.ErrRefused, socks.ReplyHostUnreachable, socks.Reply4Rejected, 502},
	{"resolver timeout", fmt.Errorf("q: %w", resolver.ErrTimeout), socks.ReplyHostUnreachable, socks.Reply4Rejected, 504},
	{"resolver timeout beside NODATA", errors.Join(resolver.ErrNoData, resolver.ErrTimeout), socks.ReplyHostUnreachable, socks.Reply4Rejected, 504},
	{"resolver timeout at the dial deadline", fmt.Errorf("%w: %w", resolver.ErrTimeout, context.DeadlineExceeded),
		socks.ReplyHostUnreachable, socks.Reply4Rejected, 504},
	{"nat64 policy", fmt.Errorf("synthesize 10.0.0.1: %w", nat64.ErrPolicy), socks.ReplyNotAllowed, socks.Reply4Rejected, 403},
	{"nat64 no prefix", fmt.Errorf("x: %w", nat64.ErrNoPrefix), socks.ReplyNetworkUnreachable, socks.Reply4Rejected, 502},
	{"dns bad response", resolver.ErrBadResponse, socks.ReplyHostUnreachable, socks.Reply4Rejected, 502},
	{"dns bad name", resolver.ErrBadName, socks.ReplyHostUnreachable, socks.Reply4Rejected, 502},
	{"resolver closed", resolver.ErrClosed, socks.ReplyGeneralFailure, socks.Reply4Rejected, 502},
	{"socks policy", socks.ErrPolicy, socks.ReplyNotAllowed, socks.Reply4Rejected, 403},
	{"eacces", dialErr(syscall.EACCES), socks.ReplyNotAllowed, socks.Reply4Rejected, 403},
	{"eperm", dialErr(syscall.EPERM), socks.ReplyNotAllowed, socks.Reply4Rejected, 403},
	{"policy beats refused", errors.Join(socks.ErrPolicy, syscall.ECONNREFUSED), socks.ReplyNotAllowed, socks.Reply4Rejected, 403},
	{"command", fmt.Errorf("%w: BIND", socks.ErrCommandNotSupported), socks.ReplyCommandNotSupported, socks.Reply4Rejected, 405},
	{"http method", socks.ErrMethodNotAllowed, socks.ReplyCommandNotSupported, socks.Reply4Rejected, 405},
	{"addr type", fmt.Errorf("%w: 0x05", socks.ErrAddrTypeNotSupported), socks.ReplyAddrTypeUnsupported, socks.Reply4Rejected, 400},
	{"auth", socks.ErrAuth, socks.ReplyGeneralFailure, socks.Reply4Rejected, 407},
	{"malformed", socks.ErrMalformed, socks.ReplyGeneralFailure, socks.Reply4Rejected, 400},
	{"version", socks.ErrVersion, socks.ReplyGeneralFailure, socks.Reply4Rejected, 400},
	{"header too large", socks.ErrHeaderTooLarge, socks.ReplyGeneralFailure, socks.Reply4Rejected, 400},
	{"canceled", context.Canceled, socks.ReplyGeneralFailure, socks.Reply4Rejected, 502},
	{"emfile", dialErr(syscall.EMFILE), socks.ReplyGeneralFailure, socks.Reply4Rejected, 502},
	{"text is never matched", errors.New("connect: connection refused"), socks.ReplyGeneralFailure, socks.Reply4Rejected, 502},
	{"text timeout is never matched", errors.New("i/o timeout"), socks.ReplyGeneralFailure, socks.Reply4Rejected, 502},
}

func TestErrorMapping(t *testing.T) {
	for _, tt := range mappingCases {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReplyFor(tt.err); got != tt.rep {
				t.Errorf("ReplyFor = %v, want %v", got, tt.rep)
			}
			if got := SOCKS4ReplyFor(tt.err); got != tt.rep4 {
				t.Errorf("SOCKS4ReplyFor = %v, want %v", got, tt.rep4)
			}
			if got := HTTPStatusFor(tt.err); got != tt.status {
				t.Errorf("HTTPStatusFor = %d, want %d", got, tt.status)
			}
		})
	}
}

// TestErrorMappingRealDial maps the error of a real dial to a closed loopback port.
func TestErrorMappingRealDial(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("refused dials on windows retry for a while")
	}
	checkFDs(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
		t.Skip("something else listens on the freed port")
	}
	if got := ReplyFor(err); got != socks.ReplyConnectionRefused {
		t.Errorf("ReplyFor(%v) = %v, want connection refused", err, got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if got := ReplyFor(err); got != socks.ReplyGeneralFailure {
		t.Errorf("ReplyFor(%v) = %v, want general failure", err, got)
	}
}
