package socks

import (
	"net/netip"
	"testing"
)

func BenchmarkParseSOCKS5Request(b *testing.B) {
	cases := []struct {
		name string
		in   []byte
	}{
		{"ipv4", []byte{5, 1, 0, 1, 192, 0, 2, 1, 0x01, 0xbb}},
		{"ipv6", append(append([]byte{5, 1, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 0, 80)},
		{"domain", []byte("\x05\x01\x00\x03\x0bexample.com\x00\x50")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.in)))
			for b.Loop() {
				if _, _, err := ParseRequest(c.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseHTTPConnect(b *testing.B) {
	in := []byte("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: curl/8.5.0\r\n" +
		"Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\nProxy-Connection: Keep-Alive\r\n\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, _, err := ParseHTTPConnect(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendReply(b *testing.B) {
	buf := make([]byte, 0, 32)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendReply(buf[:0], ReplySucceeded, netip.AddrPort{})
	}
}

// BenchmarkUDPHeader parses a datagram's header and writes a reply's, per relayed datagram.
func BenchmarkUDPHeader(b *testing.B) {
	cases := []struct {
		name string
		in   []byte
	}{
		{"ipv4", []byte{0, 0, 0, 1, 192, 0, 2, 1, 0, 53, 'd', 'a', 't', 'a'}},
		{"ipv6", append(append([]byte{0, 0, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 0, 53, 'd')},
		{"domain", []byte("\x00\x00\x00\x03\x0bexample.com\x00\x35data")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.in)))
			var out [MaxUDPHeaderLen]byte
			for b.Loop() {
				h, _, err := ParseUDPHeader(c.in)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := AppendUDPHeader(out[:0], h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestUDPHeaderAllocs holds the per-datagram parse and encode of an IP header to no
// allocation (a name costs one: its string).
func TestUDPHeaderAllocs(t *testing.T) {
	in := append(append([]byte{0, 0, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 0, 53, 'd')
	var out [MaxUDPHeaderLen]byte
	if n := testing.AllocsPerRun(100, func() {
		h, _, _ := ParseUDPHeader(in)
		_, _ = AppendUDPHeader(out[:0], h)
	}); n != 0 {
		t.Errorf("%v allocations per datagram, want 0", n)
	}
}
