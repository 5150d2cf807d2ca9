package socks

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// Fuzz targets for every parser, seeded from the table cases and their truncations. Each checks
// the parser contract (no panic, n <= len(input), n == 0 on error) and that re-encoding what was
// parsed parses back to the same message.

func seed(f *testing.F, msgs ...[]byte) {
	for _, m := range msgs {
		f.Add(m)
		if len(m) > 48 {
			f.Add(m[:len(m)/2])
			f.Add(m[:len(m)-1])
			continue
		}
		for _, p := range truncationCases(m) {
			f.Add(p)
		}
	}
}

func FuzzParseGreeting(f *testing.F) {
	for _, tt := range greetingCases {
		seed(f, tt.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, n, err := ParseGreeting(b)
		checkInvariants(t, b, n, err)
		if err != nil {
			return
		}
		g2, _, err := ParseGreeting(AppendGreeting(nil, g.Methods()...))
		if err != nil || g2 != g {
			t.Fatalf("re-encoded greeting %v parses as %v, %v", g.Methods(), g2.Methods(), err)
		}
	})
}

func FuzzParseUserPass(f *testing.F) {
	for _, tt := range userPassCases {
		seed(f, tt.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		up, n, err := ParseUserPass(b)
		checkInvariants(t, b, n, err)
		if err != nil {
			return
		}
		enc, err := AppendUserPass(nil, up)
		if err != nil || !bytes.Equal(enc, b[:n]) {
			t.Fatalf("re-encoded %q (%v), want %q", enc, err, b[:n])
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	for _, tt := range requestCases {
		seed(f, tt.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := ParseRequest(b)
		checkInvariants(t, b, n, err)
		if err != nil {
			return
		}
		checkAddr(t, r.Dest)
		enc, err := AppendRequest(nil, r)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		r2, n2, err := ParseRequest(enc)
		if err != nil || n2 != len(enc) || r2 != r {
			t.Fatalf("%+v -> %x -> %+v, %v", r, enc, r2, err)
		}
	})
}

func FuzzParseSOCKS4(f *testing.F) {
	for _, tt := range socks4Cases {
		seed(f, tt.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := ParseSOCKS4(b)
		checkInvariants(t, b, n, err)
		if err != nil {
			return
		}
		checkAddr(t, r.Dest)
		enc, err := AppendSOCKS4Request(nil, r)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		r2, n2, err := ParseSOCKS4(enc)
		if err != nil || n2 != len(enc) || r2 != r {
			t.Fatalf("%+v -> %q -> %+v, %v", r, enc, r2, err)
		}
	})
}

func FuzzParseHTTPConnect(f *testing.F) {
	for _, tt := range httpCases {
		if len(tt.in) < 1024 {
			seed(f, []byte(tt.in))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := ParseHTTPConnect(b)
		checkInvariants(t, b, n, err)
		if n > MaxHTTPHeaderBytes {
			t.Fatalf("consumed %d bytes, over the cap", n)
		}
		if err != nil {
			return
		}
		checkAddr(t, r.Dest)
		if r.Dest.Port == 0 {
			t.Fatal("CONNECT to port 0 accepted")
		}
		enc := AppendHTTPConnect(nil, r)
		r2, n2, err := ParseHTTPConnect(enc)
		if err != nil || n2 != len(enc) || r2 != r {
			t.Fatalf("%+v -> %q -> %+v, %v", r, enc, r2, err)
		}
	})
}

func FuzzParseReply(f *testing.F) {
	seed(f, []byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}, []byte("\x05\x01\x00\x03\x01a\x00\x00"))
	for _, tt := range requestCases {
		seed(f, tt.in) // same address grammar after the first three bytes
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, bnd, n, err := ParseReply(b)
		checkInvariants(t, b, n, err)
		if err != nil || bnd.IsName() {
			return
		}
		enc := AppendReply(nil, rep, bnd.AddrPort())
		rep2, bnd2, _, err := ParseReply(enc)
		if err != nil || rep2 != rep || bnd2.Port != bnd.Port || bnd2.IP != bnd.IP.Unmap() {
			t.Fatalf("%v %v -> %x -> %v %v, %v", rep, bnd, enc, rep2, bnd2, err)
		}
	})
}

func FuzzParseSmallReplies(f *testing.F) {
	seed(f, []byte{5, 0}, []byte{1, 0}, []byte{0, 90, 0, 0, 0, 0, 0, 0}, []byte{4, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := ParseMethodSelection(b)
		checkInvariants(t, b, n, err)
		if err == nil && !bytes.Equal(AppendMethodSelection(nil, m), b[:n]) {
			t.Fatalf("method selection %x", b[:n])
		}
		ok, n, err := ParseAuthStatus(b)
		checkInvariants(t, b, n, err)
		if err == nil && ok != (b[1] == 0) {
			t.Fatalf("auth status %x", b[:n])
		}
		rep, n, err := ParseSOCKS4Reply(b)
		checkInvariants(t, b, n, err)
		if err == nil && Reply4(b[1]) != rep {
			t.Fatalf("socks4 reply %x", b[:n])
		}
	})
}

// checkAddr asserts what every parsed destination satisfies.
func checkAddr(t *testing.T, a Addr) {
	t.Helper()
	if !a.IsValid() {
		t.Fatalf("invalid destination %+v", a)
	}
	if a.IP.Zone() != "" || strings.ContainsAny(a.Host, ":\x00 \r\n[]/@%") || len(a.Host) > MaxHostLen {
		t.Fatalf("destination %q escaped validation", a.String())
	}
}

// TestFuzzRegressions keeps inputs the fuzzers found or that once looked risky.
func TestFuzzRegressions(t *testing.T) {
	tests := []struct {
		name    string
		p       parser
		in      string
		wantErr error
	}{
		{"http lone CR line", erase(ParseHTTPConnect), "CONNECT h:1 HTTP/1.1\r\r\n\r\n", ErrMalformed},
		{"http NUL in host", erase(ParseHTTPConnect), "CONNECT h\x00:1 HTTP/1.1\r\n\r\n", ErrAddrTypeNotSupported},
		{"http brackets only", erase(ParseHTTPConnect), "CONNECT []:1 HTTP/1.1\r\n\r\n", ErrAddrTypeNotSupported},
		{"http bracket ipv4-mapped", erase(ParseHTTPConnect), "CONNECT [::ffff:1.2.3.4]:1 HTTP/1.1\r\n\r\n", nil},
		{"socks5 domain of dots", erase(ParseRequest), "\x05\x01\x00\x03\x01.\x00\x01", nil},
		{"socks4a host with zone", erase(ParseSOCKS4), "\x04\x01\x00\x50\x00\x00\x00\x01\x00fe80::1%lo\x00", ErrAddrTypeNotSupported},
		{"socks5 ipv4-in-domain with leading zero", erase(ParseRequest), "\x05\x01\x00\x03\x0801.2.3.4\x00\x01", nil},
		{"udp mapped ipv4 in domain", erase(ParseUDPHeader), "\x00\x00\x00\x03\x10::ffff:127.0.0.1\x00\x01", nil},
		{"udp domain length past the end", erase(ParseUDPHeader), "\x00\x00\x00\x03\xff", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, n, err := tt.p([]byte(tt.in))
			checkInvariants(t, []byte(tt.in), n, err)
			if !errors.Is(err, tt.wantErr) && !(tt.wantErr == nil && err == nil) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
