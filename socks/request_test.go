package socks

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

var requestCases = []struct {
	name    string
	in      []byte
	want    Request
	wantErr error
}{
	{"connect ipv4", []byte{5, 1, 0, 1, 192, 0, 2, 1, 0x01, 0xbb},
		Request{CmdConnect, Addr{IP: ip("192.0.2.1"), Port: 443}}, nil},
	{"connect ipv6", append(append([]byte{5, 1, 0, 4}, ip("2001:db8::1").AsSlice()...), 0, 80),
		Request{CmdConnect, Addr{IP: ip("2001:db8::1"), Port: 80}}, nil},
	{"connect mapped ipv6 kept", append(append([]byte{5, 1, 0, 4}, ip("::ffff:192.0.2.7").AsSlice()...), 0, 80),
		Request{CmdConnect, Addr{IP: ip("::ffff:192.0.2.7"), Port: 80}}, nil},
	{"connect domain", []byte("\x05\x01\x00\x03\x0bexample.com\x00\x50"),
		Request{CmdConnect, Addr{Host: "example.com", Port: 80}}, nil},
	{"domain max length", append(append([]byte("\x05\x01\x00\x03\xff"), strings.Repeat("a", 255)...), 0xff, 0xff),
		Request{CmdConnect, Addr{Host: strings.Repeat("a", 255), Port: 65535}}, nil},
	{"domain ipv4 literal", []byte("\x05\x01\x00\x03\x09192.0.2.9\x00\x16"),
		Request{CmdConnect, Addr{IP: ip("192.0.2.9"), Port: 22}}, nil},
	{"domain ipv6 literal", []byte("\x05\x01\x00\x03\x0b2001:db8::5\x01\x00"),
		Request{CmdConnect, Addr{IP: ip("2001:db8::5"), Port: 256}}, nil},
	{"domain hex-looking name", []byte("\x05\x01\x00\x03\x04cafe\x00\x50"),
		Request{CmdConnect, Addr{Host: "cafe", Port: 80}}, nil},
	{"domain underscore and idn", []byte("\x05\x01\x00\x03\x09_x.b\xc3\xa9.fr\x00\x50"),
		Request{CmdConnect, Addr{Host: "_x.b\xc3\xa9.fr", Port: 80}}, nil},
	{"rsv ignored", []byte{5, 1, 0xff, 1, 198, 51, 100, 1, 0, 0},
		Request{CmdConnect, Addr{IP: ip("198.51.100.1"), Port: 0}}, nil},
	{"bind", []byte{5, 2, 0, 1, 203, 0, 113, 5, 0x1f, 0x90},
		Request{CmdBind, Addr{IP: ip("203.0.113.5"), Port: 8080}}, nil},
	{"udp associate zero", []byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0},
		Request{CmdUDPAssociate, Addr{IP: ip("0.0.0.0")}}, nil},

	{"wrong version", []byte{4, 1, 0, 1, 192, 0, 2, 1, 0, 80}, Request{}, ErrVersion},
	{"cmd 0", []byte{5, 0, 0, 1, 192, 0, 2, 1, 0, 80}, Request{}, ErrCommandNotSupported},
	{"cmd tor resolve", []byte{5, 0xf0}, Request{}, ErrCommandNotSupported},
	{"cmd 4", []byte{5, 4, 0, 1}, Request{}, ErrCommandNotSupported},
	{"atyp 0", []byte{5, 1, 0, 0, 1, 2, 3, 4, 0, 80}, Request{}, ErrAddrTypeNotSupported},
	{"atyp 2", []byte{5, 1, 0, 2}, Request{}, ErrAddrTypeNotSupported},
	{"atyp 5", []byte{5, 1, 0, 5, 1, 2, 3, 4, 0, 80}, Request{}, ErrAddrTypeNotSupported},
	{"domain length 0", []byte{5, 1, 0, 3, 0, 0, 80}, Request{}, ErrAddrTypeNotSupported},
	{"domain length 0 early", []byte{5, 1, 0, 3, 0}, Request{}, ErrAddrTypeNotSupported},
	{"domain with NUL", []byte("\x05\x01\x00\x03\x04a\x00bc\x00\x50"), Request{}, ErrAddrTypeNotSupported},
	{"domain with space", []byte("\x05\x01\x00\x03\x03a b\x00\x50"), Request{}, ErrAddrTypeNotSupported},
	{"domain with colon", []byte("\x05\x01\x00\x03\x06host:1\x00\x50"), Request{}, ErrAddrTypeNotSupported},
	{"domain ipv6 with zone", []byte("\x05\x01\x00\x03\x0afe80::1%25\x00\x50"), Request{}, ErrAddrTypeNotSupported},
}

func TestParseRequest(t *testing.T) {
	for _, tt := range requestCases {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantErr != nil {
				_, n, err := ParseRequest(tt.in)
				if !errors.Is(err, tt.wantErr) || n != 0 {
					t.Fatalf("n=%d err=%v, want 0 and %v", n, err, tt.wantErr)
				}
				return
			}
			got := checkComplete(t, erase(ParseRequest), tt.in).(Request)
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			// Round trip: encode what was parsed and parse it again.
			enc, err := AppendRequest(nil, got)
			if err != nil {
				t.Fatal(err)
			}
			again := checkComplete(t, erase(ParseRequest), enc).(Request)
			if again != got {
				t.Errorf("round trip %+v -> %x -> %+v", got, enc, again)
			}
		})
	}
}

func TestAppendRequestErrors(t *testing.T) {
	tests := []Request{
		{CmdConnect, Addr{}},
		{CmdConnect, Addr{IP: ip("192.0.2.1"), Host: "both"}},
		{CmdConnect, Addr{Host: strings.Repeat("a", 256)}},
	}
	for _, r := range tests {
		if _, err := AppendRequest(nil, r); !errors.Is(err, ErrAddrTypeNotSupported) {
			t.Errorf("AppendRequest(%+v) err = %v", r, err)
		}
	}
}

func TestAppendReply(t *testing.T) {
	tests := []struct {
		name    string
		rep     Reply
		bnd     netip.AddrPort
		want    []byte
		wantBnd Addr
	}{
		{"default", ReplySucceeded, netip.AddrPort{}, []byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}, Addr{IP: ip("0.0.0.0")}},
		{"failure default", ReplyConnectionRefused, netip.AddrPort{}, []byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}, Addr{IP: ip("0.0.0.0")}},
		{"ipv4", ReplySucceeded, netip.MustParseAddrPort("192.0.2.1:1080"),
			[]byte{5, 0, 0, 1, 192, 0, 2, 1, 0x04, 0x38}, Addr{IP: ip("192.0.2.1"), Port: 1080}},
		{"mapped as ipv4", ReplySucceeded, netip.MustParseAddrPort("[::ffff:192.0.2.1]:7"),
			[]byte{5, 0, 0, 1, 192, 0, 2, 1, 0, 7}, Addr{IP: ip("192.0.2.1"), Port: 7}},
		{"ipv6", ReplyTTLExpired, netip.MustParseAddrPort("[2001:db8::2]:65535"),
			append(append([]byte{5, 6, 0, 4}, ip("2001:db8::2").AsSlice()...), 0xff, 0xff),
			Addr{IP: ip("2001:db8::2"), Port: 65535}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendReply([]byte("pre"), tt.rep, tt.bnd)
			if !bytes.Equal(got[3:], tt.want) || string(got[:3]) != "pre" {
				t.Fatalf("AppendReply = %x, want pre+%x", got, tt.want)
			}
			rep, bnd, n, err := ParseReply(got[3:])
			if err != nil || n != len(tt.want) || rep != tt.rep || bnd != tt.wantBnd {
				t.Errorf("ParseReply = %v %+v %d %v", rep, bnd, n, err)
			}
			checkComplete(t, erase(func(b []byte) (Addr, int, error) {
				_, a, n, err := ParseReply(b)
				return a, n, err
			}), tt.want)
		})
	}
	if _, _, _, err := ParseReply([]byte{4, 0, 0}); !errors.Is(err, ErrVersion) {
		t.Errorf("ParseReply version 4: %v", err)
	}
}

func TestParseRequestDoesNotAlias(t *testing.T) {
	buf := []byte("\x05\x01\x00\x03\x0bexample.com\x00\x50")
	r, _, err := ParseRequest(buf)
	if err != nil {
		t.Fatal(err)
	}
	clear(buf)
	if r.Dest.Host != "example.com" {
		t.Errorf("Host %q aliases the input", r.Dest.Host)
	}
}

func TestParseRequestAllocs(t *testing.T) {
	in := []byte{5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80}
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := ParseRequest(in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("ParseRequest(IPv6 literal) allocates %v times, want 0", allocs)
	}
	buf := make([]byte, 0, 32)
	allocs = testing.AllocsPerRun(100, func() {
		buf = AppendReply(buf[:0], ReplySucceeded, netip.AddrPort{})
	})
	if allocs != 0 {
		t.Errorf("AppendReply allocates %v times, want 0", allocs)
	}
}

func TestAddrString(t *testing.T) {
	tests := []struct {
		a    Addr
		want string
	}{
		{Addr{IP: ip("192.0.2.1"), Port: 80}, "192.0.2.1:80"},
		{Addr{IP: ip("2001:db8::1"), Port: 443}, "[2001:db8::1]:443"},
		{Addr{Host: "example.com", Port: 8080}, "example.com:8080"},
		{AddrFromAddrPort(netip.MustParseAddrPort("[2001:db8::3]:0")), "[2001:db8::3]:0"},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
		if tt.a.IsName() != (tt.a.Host != "") || !tt.a.IsValid() {
			t.Errorf("%v: IsName/IsValid wrong", tt.a)
		}
		if ap := tt.a.AddrPort(); ap.IsValid() == tt.a.IsName() {
			t.Errorf("%v: AddrPort() = %v", tt.a, ap)
		}
	}
}
