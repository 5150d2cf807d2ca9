package socks

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var udpHeaderCases = []struct {
	name    string
	in      []byte // header and payload
	want    UDPHeader
	off     int // payload offset
	wantErr error
}{
	{"ipv4", []byte{0, 0, 0, 1, 192, 0, 2, 1, 0, 53, 'h', 'i'},
		UDPHeader{Dest: Addr{IP: ip("192.0.2.1"), Port: 53}}, 10, nil},
	{"ipv4 empty payload", []byte{0, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90},
		UDPHeader{Dest: Addr{IP: ip("127.0.0.1"), Port: 8080}}, 10, nil},
	{"ipv6", append(append([]byte{0, 0, 0, 4}, ip("2001:db8::1").AsSlice()...), 0, 7, 'x'),
		UDPHeader{Dest: Addr{IP: ip("2001:db8::1"), Port: 7}}, 22, nil},
	{"domain", []byte("\x00\x00\x00\x03\x0bexample.com\x00\x35payload"),
		UDPHeader{Dest: Addr{Host: "example.com", Port: 53}}, 18, nil},
	{"domain ipv4 literal", []byte("\x00\x00\x00\x03\x09192.0.2.9\x00\x07"),
		UDPHeader{Dest: Addr{IP: ip("192.0.2.9"), Port: 7}}, 16, nil},
	{"frag kept for the caller", []byte{0, 0, 0x81, 1, 10, 0, 0, 1, 0, 1, 'f'},
		UDPHeader{Frag: 0x81, Dest: Addr{IP: ip("10.0.0.1"), Port: 1}}, 10, nil},
	{"rsv ignored", []byte{0xff, 0xff, 0, 1, 10, 0, 0, 1, 0, 1},
		UDPHeader{Dest: Addr{IP: ip("10.0.0.1"), Port: 1}}, 10, nil},
	{"domain max length", append(append([]byte("\x00\x00\x00\x03\xff"), strings.Repeat("a", 255)...), 0, 9),
		UDPHeader{Dest: Addr{Host: strings.Repeat("a", 255), Port: 9}}, 262, nil},

	{"empty", nil, UDPHeader{}, 0, ErrMalformed},
	{"rsv and frag only", []byte{0, 0, 0}, UDPHeader{}, 0, ErrMalformed},
	{"short ipv4", []byte{0, 0, 0, 1, 1, 2, 3}, UDPHeader{}, 0, ErrMalformed},
	{"ipv4 without port", []byte{0, 0, 0, 1, 1, 2, 3, 4, 0}, UDPHeader{}, 0, ErrMalformed},
	{"short ipv6", []byte{0, 0, 0, 4, 0x20, 1}, UDPHeader{}, 0, ErrMalformed},
	{"domain without length", []byte{0, 0, 0, 3}, UDPHeader{}, 0, ErrMalformed},
	{"short domain", []byte("\x00\x00\x00\x03\x05ab"), UDPHeader{}, 0, ErrMalformed},
	{"empty domain", []byte{0, 0, 0, 3, 0, 0, 53}, UDPHeader{}, 0, ErrAddrTypeNotSupported},
	{"bad atyp", []byte{0, 0, 0, 2, 1, 2, 3, 4, 0, 1}, UDPHeader{}, 0, ErrAddrTypeNotSupported},
	{"atyp zero", []byte{0, 0, 0, 0}, UDPHeader{}, 0, ErrAddrTypeNotSupported},
	{"domain with space", []byte("\x00\x00\x00\x03\x03a b\x00\x35"), UDPHeader{}, 0, ErrAddrTypeNotSupported},
}

func TestParseUDPHeader(t *testing.T) {
	for _, tt := range udpHeaderCases {
		t.Run(tt.name, func(t *testing.T) {
			h, n, err := ParseUDPHeader(tt.in)
			checkInvariants(t, tt.in, n, err)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || h != tt.want || n != tt.off {
				t.Fatalf("got %+v at %d, %v; want %+v at %d", h, n, err, tt.want, tt.off)
			}
			// Every strict prefix of a header is a malformed datagram, never "need more".
			for i := 0; i < n; i++ {
				if _, _, err := ParseUDPHeader(tt.in[:i]); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAddrTypeNotSupported) {
					t.Fatalf("prefix of %d bytes: %v, want ErrMalformed", i, err)
				}
			}
		})
	}
}

func TestUDPHeaderRoundTrip(t *testing.T) {
	for _, tt := range udpHeaderCases {
		if tt.wantErr != nil {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			h := tt.want
			enc, err := AppendUDPHeader([]byte("prefix"), h)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(enc, []byte("prefix")) {
				t.Fatalf("%q lost the bytes it was appended to", enc)
			}
			enc = append(enc[len("prefix"):], "data"...)
			got, n, err := ParseUDPHeader(enc)
			if err != nil || got != h || string(enc[n:]) != "data" {
				t.Fatalf("%+v -> %x -> %+v (payload %q), %v", h, enc, got, enc[n:], err)
			}
		})
	}
}

func TestAppendUDPHeaderErrors(t *testing.T) {
	for _, h := range []UDPHeader{
		{},
		{Dest: Addr{Host: strings.Repeat("a", 256), Port: 1}},
		{Dest: Addr{Host: "both", IP: ip("192.0.2.1")}},
	} {
		out, err := AppendUDPHeader([]byte("x"), h)
		if !errors.Is(err, ErrAddrTypeNotSupported) || string(out) != "x" {
			t.Errorf("AppendUDPHeader(%+v) = %q, %v; want x unchanged and ErrAddrTypeNotSupported", h, out, err)
		}
	}
	// Replies to the client name IPv4 as ATYP 01 and IPv4-mapped as 04, as the request encoder.
	enc, _ := AppendUDPHeader(nil, UDPHeader{Dest: Addr{IP: ip("::ffff:192.0.2.1"), Port: 1}})
	if enc[3] != byte(AddrIPv6) {
		t.Errorf("mapped address sent as ATYP %d", enc[3])
	}
}

func FuzzUDPHeader(f *testing.F) {
	for _, tt := range udpHeaderCases {
		seed(f, tt.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseUDPHeader(b)
		checkInvariants(t, b, n, err)
		if errors.Is(err, ErrNeedMore) {
			t.Fatal("a datagram parser asked for more bytes")
		}
		if err != nil {
			return
		}
		checkAddr(t, h.Dest)
		if n > MaxUDPHeaderLen {
			t.Fatalf("header of %d bytes, over MaxUDPHeaderLen", n)
		}
		enc, err := AppendUDPHeader(nil, h)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", h, err)
		}
		h2, n2, err := ParseUDPHeader(append(enc, b[n:]...))
		if err != nil || n2 != len(enc) || h2 != h {
			t.Fatalf("%+v -> %x -> %+v, %v", h, enc, h2, err)
		}
	})
}
