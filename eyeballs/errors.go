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
)

// Sentinel errors.
var (
	// ErrNoAddress is wrapped when a name resolved to no usable address and DNS gave no reason.
	ErrNoAddress = errors.New("eyeballs: no addresses to dial")
	// ErrNoResolver is wrapped when a name is dialed by a Dialer without a Resolver.
	ErrNoResolver = errors.New("eyeballs: no resolver for a host name")
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
type timeoutError struct {
	host string
	d    time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("eyeballs: %s: no connection within %v: %v", e.host, e.d, context.DeadlineExceeded)
}
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }
func (e *timeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded || target == os.ErrDeadlineExceeded
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
	case errors.Is(err, nat64.ErrPolicy):
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
	case errors.Is(err, nat64.ErrPolicy):
		return ReasonPolicy
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	case isTimeout(err):
		return ReasonTimeout
	case errors.Is(err, ErrNoAddress), errors.Is(err, errDNS):
		return ReasonDNS
	}
	return ReasonOther
}

// errDNS marks failures that come from name resolution (wrapped alongside the resolver's error).
var errDNS = errors.New("eyeballs: name resolution failed")

// opError wraps err as a dial *net.OpError, unless it already is one.
func opError(network string, addr net.Addr, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return err
	}
	return &net.OpError{Op: "dial", Net: network, Addr: addr, Err: err}
}
