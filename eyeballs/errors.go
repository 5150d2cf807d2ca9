package eyeballs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/resolver"
)

// Sentinel errors.
var (
	// ErrNoAddress is wrapped when a name resolved to no usable address and DNS gave no reason.
	ErrNoAddress = errors.New("eyeballs: no addresses to dial")
	// ErrNoResolver is wrapped when a name is dialed by a Dialer without a Resolver.
	ErrNoResolver = errors.New("eyeballs: no resolver for a host name")
	// ErrNotAllowed is wrapped, with Approve's error, when Dialer.Approve refused an address.
	ErrNotAllowed = errors.New("eyeballs: destination not allowed")
)

// Failure reasons, the values of the race_failures_total "reason" label.
const (
	ReasonRefused         = "refused"
	ReasonHostUnreachable = "host_unreachable"
	ReasonNetUnreachable  = "net_unreachable"
	ReasonTimeout         = "timeout"
	ReasonPolicy          = "policy"
	ReasonDNS             = "dns"
	ReasonCanceled        = "canceled"
	ReasonOther           = "other"
)

// timeoutError is the result of a race that ran out of time: errors.Is matches
// context.DeadlineExceeded and os.ErrDeadlineExceeded, and it is a net.Error with Timeout.
// resolving is set when the resolver had not answered by then: it also matches
// resolver.ErrTimeout.
type timeoutError struct {
	host      string
	d         time.Duration
	resolving bool
}

func (e *timeoutError) Error() string {
	what := "connection"
	if e.resolving {
		what = "answer from the resolver"
	}
	return fmt.Sprintf("eyeballs: %s: no %s within %v: %v", e.host, what, e.d, context.DeadlineExceeded)
}
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }
func (e *timeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded || target == os.ErrDeadlineExceeded ||
		(e.resolving && target == resolver.ErrTimeout)
}

// resolveError is a race that ended without a single address to try: resolution failed, and
// err (the resolver's errors, joined) says how. errors.Is also matches errDNS.
type resolveError struct {
	host string
	err  error
}

func (e *resolveError) Error() string   { return "eyeballs: resolve " + e.host + ": " + e.err.Error() }
func (e *resolveError) Unwrap() []error { return []error{errDNS, e.err} }

// Timeout reports a resolver that did not answer in time, so that the *net.OpError around it
// is a net.Error timeout too.
func (e *resolveError) Timeout() bool {
	return errors.Is(e.err, resolver.ErrTimeout) || isTimeout(e.err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// rank orders attempt errors by how much they tell the client: refused > host unreachable >
// network unreachable > anything else > timeout > policy.
func rank(err error) int {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return 6
	case errors.Is(err, syscall.EHOSTUNREACH):
		return 5
	case errors.Is(err, syscall.ENETUNREACH):
		return 4
	case errors.Is(err, nat64.ErrPolicy), errors.Is(err, ErrNotAllowed):
		return 0
	case isTimeout(err):
		return 1
	}
	return 2
}

// reason labels a race failure for metrics.
func reason(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRefused
	case errors.Is(err, syscall.EHOSTUNREACH):
		return ReasonHostUnreachable
	case errors.Is(err, syscall.ENETUNREACH):
		return ReasonNetUnreachable
	case errors.Is(err, nat64.ErrPolicy), errors.Is(err, ErrNotAllowed):
		return ReasonPolicy
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	case errors.Is(err, ErrNoAddress), errors.Is(err, errDNS): // a DNS timeout is a DNS failure
		return ReasonDNS
	case isTimeout(err):
		return ReasonTimeout
	}
	return ReasonOther
}

// errDNS marks failures that come from name resolution (see resolveError).
var errDNS = errors.New("eyeballs: name resolution failed")

// opError wraps err as a dial *net.OpError, unless it already is one.
func opError(network string, addr net.Addr, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return err
	}
	return &net.OpError{Op: "dial", Net: network, Addr: addr, Err: err}
}
