package socks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/resolver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
	rep    Reply
	rep4   Reply4
	status int
}{
	{"nil", nil, ReplySucceeded, Reply4Granted, 200},
	{"refused", syscall.ECONNREFUSED, ReplyConnectionRefused, Reply4Rejected, 502},
	{"refused in OpError", dialErr(syscall.ECONNREFUSED), ReplyConnectionRefused, Reply4Rejected, 502},
	{"refused wrapped twice", fmt.Errorf("eyeballs: all attempts failed: %w", dialErr(syscall.ECONNREFUSED)), ReplyConnectionRefused, Reply4Rejected, 502},
	{"reset", dialErr(syscall.ECONNRESET), ReplyConnectionRefused, Reply4Rejected, 502},
	{"net unreachable", dialErr(syscall.ENETUNREACH), ReplyNetworkUnreachable, Reply4Rejected, 502},
	{"net down", syscall.ENETDOWN, ReplyNetworkUnreachable, Reply4Rejected, 502},
	{"host unreachable", dialErr(syscall.EHOSTUNREACH), ReplyHostUnreachable, Reply4Rejected, 502},
	{"host down", syscall.EHOSTDOWN, ReplyHostUnreachable, Reply4Rejected, 502},
	{"etimedout", dialErr(syscall.ETIMEDOUT), ReplyTTLExpired, Reply4Rejected, 504},
	{"deadline", context.DeadlineExceeded, ReplyTTLExpired, Reply4Rejected, 504},
	{"deadline wrapped", fmt.Errorf("dial: %w", context.DeadlineExceeded), ReplyTTLExpired, Reply4Rejected, 504},
	{"os deadline", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, ReplyTTLExpired, Reply4Rejected, 504},
	{"net.Error timeout", fmt.Errorf("x: %w", timeoutErr{}), ReplyTTLExpired, Reply4Rejected, 504},
	{"dns timeout", &net.DNSError{Err: "timeout", IsTimeout: true}, ReplyTTLExpired, Reply4Rejected, 504},
	{"dns not found", &net.DNSError{Err: "no such host", IsNotFound: true}, ReplyHostUnreachable, Reply4Rejected, 502},
	{"nxdomain", fmt.Errorf("lookup x: %w", resolver.ErrNXDomain), ReplyHostUnreachable, Reply4Rejected, 502},
	{"nodata", resolver.ErrNoData, ReplyHostUnreachable, Reply4Rejected, 502},
	{"servfail", fmt.Errorf("q: %w", resolver.ErrServFail), ReplyHostUnreachable, Reply4Rejected, 502},
	{"dns refused", resolver.ErrRefused, ReplyHostUnreachable, Reply4Rejected, 502},
	{"resolver timeout", fmt.Errorf("q: %w", resolver.ErrTimeout), ReplyHostUnreachable, Reply4Rejected, 504},
	{"resolver timeout beside NODATA", errors.Join(resolver.ErrNoData, resolver.ErrTimeout), ReplyHostUnreachable, Reply4Rejected, 504},
	{"resolver timeout at the dial deadline", fmt.Errorf("%w: %w", resolver.ErrTimeout, context.DeadlineExceeded),
		ReplyHostUnreachable, Reply4Rejected, 504},
	{"nat64 policy", fmt.Errorf("synthesize 10.0.0.1: %w", nat64.ErrPolicy), ReplyNotAllowed, Reply4Rejected, 403},
	{"nat64 no prefix", fmt.Errorf("x: %w", nat64.ErrNoPrefix), ReplyNetworkUnreachable, Reply4Rejected, 502},
	{"dns bad response", resolver.ErrBadResponse, ReplyHostUnreachable, Reply4Rejected, 502},
	{"dns bad name", resolver.ErrBadName, ReplyHostUnreachable, Reply4Rejected, 502},
	{"resolver closed", resolver.ErrClosed, ReplyGeneralFailure, Reply4Rejected, 502},
	{"socks policy", ErrPolicy, ReplyNotAllowed, Reply4Rejected, 403},
	{"eacces", dialErr(syscall.EACCES), ReplyNotAllowed, Reply4Rejected, 403},
	{"eperm", dialErr(syscall.EPERM), ReplyNotAllowed, Reply4Rejected, 403},
	{"policy beats refused", errors.Join(ErrPolicy, syscall.ECONNREFUSED), ReplyNotAllowed, Reply4Rejected, 403},
	{"command", fmt.Errorf("%w: BIND", ErrCommandNotSupported), ReplyCommandNotSupported, Reply4Rejected, 405},
	{"http method", ErrMethodNotAllowed, ReplyCommandNotSupported, Reply4Rejected, 405},
	{"addr type", fmt.Errorf("%w: 0x05", ErrAddrTypeNotSupported), ReplyAddrTypeUnsupported, Reply4Rejected, 400},
	{"auth", ErrAuth, ReplyGeneralFailure, Reply4Rejected, 407},
	{"malformed", ErrMalformed, ReplyGeneralFailure, Reply4Rejected, 400},
	{"version", ErrVersion, ReplyGeneralFailure, Reply4Rejected, 400},
	{"header too large", ErrHeaderTooLarge, ReplyGeneralFailure, Reply4Rejected, 400},
	{"canceled", context.Canceled, ReplyGeneralFailure, Reply4Rejected, 502},
	{"emfile", dialErr(syscall.EMFILE), ReplyGeneralFailure, Reply4Rejected, 502},
	{"text is never matched", errors.New("connect: connection refused"), ReplyGeneralFailure, Reply4Rejected, 502},
	{"text timeout is never matched", errors.New("i/o timeout"), ReplyGeneralFailure, Reply4Rejected, 502},
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
	if got := ReplyFor(err); got != ReplyConnectionRefused {
		t.Errorf("ReplyFor(%v) = %v, want connection refused", err, got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if got := ReplyFor(err); got != ReplyGeneralFailure {
		t.Errorf("ReplyFor(%v) = %v, want general failure", err, got)
	}
}
