package nat64

import "errors"

// Sentinel errors. Every refusal to synthesize wraps ErrPolicy or ErrNoPrefix, so callers
// classify with errors.Is.
var (
	// ErrPolicy is wrapped by every refusal to synthesize an address (RFC 6052 §3.1 and the
	// never-synthesize list); the proxy answers it with SOCKS reply 02.
	ErrPolicy = errors.New("nat64: destination not allowed by policy")
	// ErrNoPrefix is wrapped when synthesis is off (mode "none") or no prefix is known: the
	// IPv4 destination is unreachable from an IPv6-only pod (SOCKS reply 03).
	ErrNoPrefix = errors.New("nat64: no NAT64 prefix in use")
	// ErrBadPrefix is wrapped when a prefix is not a valid RFC 6052 §2.2 prefix.
	ErrBadPrefix = errors.New("nat64: invalid RFC 6052 prefix")
	// ErrNotIPv4 is wrapped when Compose is given something other than an IPv4 address.
	ErrNotIPv4 = errors.New("nat64: not an IPv4 address")
)
