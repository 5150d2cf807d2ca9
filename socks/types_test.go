package socks

import "testing"

func TestDetect(t *testing.T) {
	tests := []struct {
		b    byte
		want Protocol
	}{
		{0x05, ProtocolSOCKS5},
		{0x04, ProtocolSOCKS4},
		{'C', ProtocolHTTP},
		{'G', ProtocolHTTP},
		{'c', ProtocolHTTP},
		{'z', ProtocolHTTP},
		{'Z', ProtocolHTTP},
		{0x00, ProtocolUnknown},
		{0x01, ProtocolUnknown},
		{0x16, ProtocolUnknown}, // TLS handshake
		{'@', ProtocolUnknown},
		{'[', ProtocolUnknown},
		{'`', ProtocolUnknown},
		{'{', ProtocolUnknown},
		{'1', ProtocolUnknown},
		{0xff, ProtocolUnknown},
	}
	for _, tt := range tests {
		if got := Detect(tt.b); got != tt.want {
			t.Errorf("Detect(0x%02x) = %v, want %v", tt.b, got, tt.want)
		}
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		v    interface{ String() string }
		want string
	}{
		{ProtocolUnknown, "unknown"},
		{ProtocolSOCKS4, "socks4"},
		{ProtocolSOCKS5, "socks5"},
		{ProtocolHTTP, "http"},
		{MethodNoAuth, "no authentication required"},
		{MethodGSSAPI, "GSSAPI"},
		{MethodUserPass, "username/password"},
		{MethodNoAcceptable, "no acceptable methods"},
		{Method(0x80), "method 0x80"},
		{CmdConnect, "CONNECT"},
		{CmdBind, "BIND"},
		{CmdUDPAssociate, "UDP ASSOCIATE"},
		{Command(0xf0), "command 0xf0"},
		{AddrIPv4, "IPv4"},
		{AddrDomain, "domain name"},
		{AddrIPv6, "IPv6"},
		{AddrType(2), "address type 0x02"},
		{ReplySucceeded, "succeeded"},
		{ReplyGeneralFailure, "general SOCKS server failure"},
		{ReplyNotAllowed, "connection not allowed by ruleset"},
		{ReplyNetworkUnreachable, "network unreachable"},
		{ReplyHostUnreachable, "host unreachable"},
		{ReplyConnectionRefused, "connection refused"},
		{ReplyTTLExpired, "TTL expired"},
		{ReplyCommandNotSupported, "command not supported"},
		{ReplyAddrTypeUnsupported, "address type not supported"},
		{Reply(0x09), "unassigned reply 0x09"},
		{Reply(0xff), "unassigned reply 0xff"},
		{Reply4Granted, "request granted"},
		{Reply4Rejected, "request rejected or failed"},
		{Reply4NoIdentd, "request rejected: identd unreachable"},
		{Reply4IdentMismatch, "request rejected: user id mismatch"},
		{Reply4(0), "socks4 reply 0"},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%T(%v).String() = %q, want %q", tt.v, tt.v, got, tt.want)
		}
	}
}
