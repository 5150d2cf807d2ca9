package resolver

import "errors"

// Sentinel errors every lookup failure wraps, so that callers classify with errors.Is.
var (
	ErrNXDomain = errors.New("resolver: name does not exist (NXDOMAIN)")
	ErrNoData   = errors.New("resolver: no address records (NODATA)")
	ErrServFail = errors.New("resolver: server failure (SERVFAIL)")
	ErrRefused  = errors.New("resolver: query refused")
	ErrTimeout  = errors.New("resolver: timeout")
	// ErrClosed is returned for lookups on (or interrupted by) a closed Resolver.
	ErrClosed = errors.New("resolver: closed")
	// ErrBadResponse is wrapped when a server answers with a malformed or mismatched message
	// or an rcode this package does not classify further (FORMERR, NOTIMP, ...).
	ErrBadResponse = errors.New("resolver: bad response")
	// ErrBadName is wrapped when a host name cannot be queried (empty, too long, bad label).
	ErrBadName = errors.New("resolver: invalid name")
	// ErrQueued is wrapped (with ErrTimeout) when a lookup's deadline passed before its query
	// could be sent, because Config.MaxInFlight queries were already in flight.
	ErrQueued = errors.New("resolver: query never sent: every in-flight slot was taken")
)
