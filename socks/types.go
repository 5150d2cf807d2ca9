package socks

import "strconv"

// Version bytes on the wire.
const (
	Version5    = 0x05 // SOCKS5 greeting, request and reply
	Version4    = 0x04 // SOCKS4/4a request
	Version4Rep = 0x00 // SOCKS4 reply (VN is zero, not 4)
	AuthVersion = 0x01 // RFC 1929 subnegotiation
)

// Protocol is what a client speaks, as told by its first byte.
type Protocol uint8

const (
	ProtocolUnknown Protocol = iota
	ProtocolSOCKS4           // SOCKS4 or SOCKS4a
	ProtocolSOCKS5
	ProtocolHTTP // HTTP CONNECT (or some other HTTP method, refused later)
)

// Detect tells the protocol from the first byte a client sends: 0x05 SOCKS5, 0x04 SOCKS4/4a,
// an ASCII letter HTTP, anything else unknown.
func Detect(first byte) Protocol {
	switch {
	case first == Version5:
		return ProtocolSOCKS5
	case first == Version4:
		return ProtocolSOCKS4
	case first >= 'A' && first <= 'Z', first >= 'a' && first <= 'z':
		return ProtocolHTTP
	}
	return ProtocolUnknown
}

func (p Protocol) String() string {
	switch p {
	case ProtocolSOCKS4:
		return "socks4"
	case ProtocolSOCKS5:
		return "socks5"
	case ProtocolHTTP:
		return "http"
	}
	return "unknown"
}

// Method is a SOCKS5 authentication method (RFC 1928 §3).
type Method uint8

const (
	MethodNoAuth       Method = 0x00
	MethodGSSAPI       Method = 0x01
	MethodUserPass     Method = 0x02 // RFC 1929
	MethodNoAcceptable Method = 0xFF
)

func (m Method) String() string {
	switch m {
	case MethodNoAuth:
		return "no authentication required"
	case MethodGSSAPI:
		return "GSSAPI"
	case MethodUserPass:
		return "username/password"
	case MethodNoAcceptable:
		return "no acceptable methods"
	}
	return "method 0x" + hex8(uint8(m))
}

// Command is a SOCKS request command. SOCKS4 uses the values 1 and 2 as well.
type Command uint8

const (
	CmdConnect      Command = 0x01
	CmdBind         Command = 0x02
	CmdUDPAssociate Command = 0x03 // SOCKS5 only
)

func (c Command) String() string {
	switch c {
	case CmdConnect:
		return "CONNECT"
	case CmdBind:
		return "BIND"
	case CmdUDPAssociate:
		return "UDP ASSOCIATE"
	}
	return "command 0x" + hex8(uint8(c))
}

// AddrType is a SOCKS5 ATYP.
type AddrType uint8

const (
	AddrIPv4   AddrType = 0x01
	AddrDomain AddrType = 0x03
	AddrIPv6   AddrType = 0x04
)

func (a AddrType) String() string {
	switch a {
	case AddrIPv4:
		return "IPv4"
	case AddrDomain:
		return "domain name"
	case AddrIPv6:
		return "IPv6"
	}
	return "address type 0x" + hex8(uint8(a))
}

// Reply is a SOCKS5 REP code (RFC 1928 §6).
type Reply uint8

const (
	ReplySucceeded           Reply = 0x00
	ReplyGeneralFailure      Reply = 0x01
	ReplyNotAllowed          Reply = 0x02
	ReplyNetworkUnreachable  Reply = 0x03
	ReplyHostUnreachable     Reply = 0x04
	ReplyConnectionRefused   Reply = 0x05
	ReplyTTLExpired          Reply = 0x06
	ReplyCommandNotSupported Reply = 0x07
	ReplyAddrTypeUnsupported Reply = 0x08
)

var replyNames = [...]string{
	ReplySucceeded:           "succeeded",
	ReplyGeneralFailure:      "general SOCKS server failure",
	ReplyNotAllowed:          "connection not allowed by ruleset",
	ReplyNetworkUnreachable:  "network unreachable",
	ReplyHostUnreachable:     "host unreachable",
	ReplyConnectionRefused:   "connection refused",
	ReplyTTLExpired:          "TTL expired",
	ReplyCommandNotSupported: "command not supported",
	ReplyAddrTypeUnsupported: "address type not supported",
}

func (r Reply) String() string {
	if int(r) < len(replyNames) {
		return replyNames[r]
	}
	return "unassigned reply 0x" + hex8(uint8(r))
}

// Reply4 is a SOCKS4 reply code (CD).
type Reply4 uint8

const (
	Reply4Granted       Reply4 = 90 // 0x5A
	Reply4Rejected      Reply4 = 91 // rejected or failed
	Reply4NoIdentd      Reply4 = 92 // identd unreachable
	Reply4IdentMismatch Reply4 = 93 // identd reports a different user id
)

func (r Reply4) String() string {
	switch r {
	case Reply4Granted:
		return "request granted"
	case Reply4Rejected:
		return "request rejected or failed"
	case Reply4NoIdentd:
		return "request rejected: identd unreachable"
	case Reply4IdentMismatch:
		return "request rejected: user id mismatch"
	}
	return "socks4 reply " + strconv.Itoa(int(r))
}

func hex8(b uint8) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&0xf]})
}
