package resolver

import "errors"

// Sentinel errors every lookup failure wraps, so that callers classify with errors.Is.
var (
	ErrNXDomain = errors.New("resolver: name does not exist (NXDOMAIN)")
	ErrNoData   = errors.New("resolver: no address records (NODATA)")
	ErrServFail = errors.New("resolver: server failure (SERVFAIL)")
	ErrRefused  = errors.New("resolver: query refused")
	ErrTimeout  = errors.New("resolver: timeout")
)
