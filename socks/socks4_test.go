package socks

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var socks4Cases = []struct {
	name    string
	in      []byte
	want    Request4
	wantErr error
}{
	{"connect", []byte("\x04\x01\x00\x50\xc0\x00\x02\x01\x00"),
		Request4{CmdConnect, Addr{IP: ip("192.0.2.1"), Port: 80}, "", false}, nil},
	{"connect userid", []byte("\x04\x01\x01\xbb\xcb\x00\x71\x05fred\x00"),
		Request4{CmdConnect, Addr{IP: ip("203.0.113.5"), Port: 443}, "fred", false}, nil},
	{"bind", []byte("\x04\x02\x00\x15\xc6\x33\x64\x01\x00"),
		Request4{CmdBind, Addr{IP: ip("198.51.100.1"), Port: 21}, "", false}, nil},
	{"4a", []byte("\x04\x01\x00\x50\x00\x00\x00\x01\x00example.com\x00"),
		Request4{CmdConnect, Addr{Host: "example.com", Port: 80}, "", true}, nil},
	{"4a userid x=255", []byte("\x04\x01\x00\x50\x00\x00\x00\xffbob\x00example.com\x00"),
		Request4{CmdConnect, Addr{Host: "example.com", Port: 80}, "bob", true}, nil},
	{"4a ipv6 literal", []byte("\x04\x01\x00\x50\x00\x00\x00\x01\x002001:db8::1\x00"),
		Request4{CmdConnect, Addr{IP: ip("2001:db8::1"), Port: 80}, "", true}, nil},
	{"4a ipv4 literal", []byte("\x04\x01\x00\x50\x00\x00\x00\x01\x00192.0.2.3\x00"),
		Request4{CmdConnect, Addr{IP: ip("192.0.2.3"), Port: 80}, "", true}, nil},
	{"0.0.0.0 is plain socks4", []byte("\x04\x01\x00\x50\x00\x00\x00\x00\x00"),
		Request4{CmdConnect, Addr{IP: ip("0.0.0.0"), Port: 80}, "", false}, nil},
	{"0.0.1.1 is plain socks4", []byte("\x04\x01\x00\x50\x00\x00\x01\x01\x00"),
		Request4{CmdConnect, Addr{IP: ip("0.0.1.1"), Port: 80}, "", false}, nil},
	{"max userid and host", []byte("\x04\x01\x00\x50\x00\x00\x00\x01" + strings.Repeat("u", 255) + "\x00" + strings.Repeat("h", 255) + "\x00"),
		Request4{CmdConnect, Addr{Host: strings.Repeat("h", 255), Port: 80}, strings.Repeat("u", 255), true}, nil},

	{"version 5", []byte("\x05\x01\x00\x50\xc0\x00\x02\x01\x00"), Request4{}, ErrVersion},
	{"cmd 3", []byte("\x04\x03"), Request4{}, ErrCommandNotSupported},
	{"cmd 0", []byte("\x04\x00\x00\x50\xc0\x00\x02\x01\x00"), Request4{}, ErrCommandNotSupported},
	{"userid too long", []byte("\x04\x01\x00\x50\xc0\x00\x02\x01" + strings.Repeat("u", 256)), Request4{}, ErrMalformed},
	{"userid too long with nul", []byte("\x04\x01\x00\x50\xc0\x00\x02\x01" + strings.Repeat("u", 256) + "\x00"), Request4{}, ErrMalformed},
	{"host too long", []byte("\x04\x01\x00\x50\x00\x00\x00\x01\x00" + strings.Repeat("h", 256)), Request4{}, ErrMalformed},
	{"4a empty host", []byte("\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00"), Request4{}, ErrAddrTypeNotSupported},
	{"4a bad host", []byte("\x04\x01\x00\x50\x00\x00\x00\x01\x00a/b\x00"), Request4{}, ErrAddrTypeNotSupported},
}

func TestParseSOCKS4(t *testing.T) {
	for _, tt := range socks4Cases {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantErr != nil {
				_, n, err := ParseSOCKS4(tt.in)
				if !errors.Is(err, tt.wantErr) || n != 0 {
					t.Fatalf("n=%d err=%v, want 0 and %v", n, err, tt.wantErr)
				}
				return
			}
			got := checkComplete(t, erase(ParseSOCKS4), tt.in).(Request4)
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			enc, err := AppendSOCKS4Request(nil, got)
			if err != nil {
				t.Fatal(err)
			}
			again := checkComplete(t, erase(ParseSOCKS4), enc).(Request4)
			if again != got {
				t.Errorf("round trip %+v -> %q -> %+v", got, enc, again)
			}
		})
	}
}

func TestAppendSOCKS4RequestErrors(t *testing.T) {
	tests := []struct {
		r    Request4
		want error
	}{
		{Request4{Command: CmdConnect}, ErrAddrTypeNotSupported},
		{Request4{CmdConnect, Addr{Host: strings.Repeat("h", 256)}, "", true}, ErrAddrTypeNotSupported},
		{Request4{CmdConnect, Addr{IP: ip("192.0.2.1")}, "a\x00b", false}, ErrMalformed},
		{Request4{CmdConnect, Addr{IP: ip("192.0.2.1")}, strings.Repeat("u", 256), false}, ErrMalformed},
	}
	for _, tt := range tests {
		if _, err := AppendSOCKS4Request(nil, tt.r); !errors.Is(err, tt.want) {
			t.Errorf("AppendSOCKS4Request(%+v) err = %v, want %v", tt.r, err, tt.want)
		}
	}
}

func TestSOCKS4Reply(t *testing.T) {
	for _, rep := range []Reply4{Reply4Granted, Reply4Rejected, Reply4NoIdentd, Reply4IdentMismatch} {
		b := AppendSOCKS4Reply([]byte{9}, rep)
		if want := []byte{9, 0, byte(rep), 0, 0, 0, 0, 0, 0}; !bytes.Equal(b, want) {
			t.Errorf("AppendSOCKS4Reply(%v) = %x, want %x", rep, b, want)
		}
		if got := checkComplete(t, erase(ParseSOCKS4Reply), b[1:]).(Reply4); got != rep {
			t.Errorf("round trip %v -> %v", rep, got)
		}
	}
	if _, _, err := ParseSOCKS4Reply([]byte{4}); !errors.Is(err, ErrVersion) {
		t.Errorf("reply VN 4: %v", err)
	}
}
