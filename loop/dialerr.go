package loop

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/policy"
	"github.com/nat464/nat464-sidecar/resolver"
)

// Failures of a proxy dial an operator can act on: the sidecar's nameservers silent or
// failing, a request looping back into the sidecar. Checked first: a lookup whose AAAA had no
// records and whose A timed out is a DNS problem, not a missing name.
var operatorErrs = [...]error{ErrSelf, resolver.ErrTimeout, resolver.ErrServFail, resolver.ErrRefused,
	resolver.ErrBadResponse}

// Failures the client's request explains: a name that does not exist or has no address, a
// port nobody listens on, a destination the NAT64 policy or the egress policy refuses, a client or a sidecar that
// went away.
var clientErrs = [...]error{resolver.ErrNXDomain, resolver.ErrNoData, resolver.ErrBadName, resolver.ErrClosed,
	syscall.ECONNREFUSED, nat64.ErrPolicy, policy.ErrDenied, context.Canceled}

// dialLevel is the log level of a failed proxy dial: WARN for what an operator can act on
// (operatorErrs, and by default the rest: no route or NAT64 prefix, a destination
// unreachable or not answering, the open-file limit), INFO for clientErrs.
func dialLevel(err error) slog.Level {
	for _, s := range operatorErrs {
		if errors.Is(err, s) {
			return slog.LevelWarn
		}
	}
	for _, s := range clientErrs {
		if errors.Is(err, s) {
			return slog.LevelInfo
		}
	}
	return slog.LevelWarn
}
