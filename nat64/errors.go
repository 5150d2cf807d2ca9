package nat64

import "errors"

// ErrPolicy is wrapped by every refusal to synthesize an address (RFC 6052 §3.1 and the
// never-synthesize list); the proxy answers it with SOCKS reply 02.
var ErrPolicy = errors.New("nat64: destination not allowed by policy")
