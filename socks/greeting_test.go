package socks

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

var greetingCases = []struct {
	name    string
	in      []byte
	methods []Method
	wantErr error
}{
	{"no auth", []byte{5, 1, 0}, []Method{MethodNoAuth}, nil},
	{"curl", []byte{5, 2, 0, 2}, []Method{MethodNoAuth, MethodUserPass}, nil},
	{"user/pass only", []byte{5, 1, 2}, []Method{MethodUserPass}, nil},
	{"duplicates and high", []byte{5, 4, 0xfe, 2, 2, 0x80}, []Method{MethodUserPass, 0x80, 0xfe}, nil},
	{"wrong version", []byte{4, 1, 0}, nil, ErrVersion},
	{"auth version", []byte{1, 1, 0}, nil, ErrVersion},
	{"nmethods 0", []byte{5, 0}, nil, ErrMalformed},
	{"nmethods 0 and more", []byte{5, 0, 0, 1}, nil, ErrMalformed},
}

func TestParseGreeting(t *testing.T) {
	for _, tt := range greetingCases {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantErr != nil {
				_, n, err := ParseGreeting(tt.in)
				if !errors.Is(err, tt.wantErr) || n != 0 {
					t.Fatalf("n=%d err=%v, want 0 and %v", n, err, tt.wantErr)
				}
				return
			}
			g := checkComplete(t, erase(ParseGreeting), tt.in).(Greeting)
			if got := g.Methods(); !slices.Equal(got, tt.methods) {
				t.Errorf("methods %v, want %v", got, tt.methods)
			}
		})
	}
}

func TestGreetingChoose(t *testing.T) {
	tests := []struct {
		offer []Method
		prefs []Method
		want  Method
	}{
		{[]Method{0}, []Method{MethodNoAuth}, MethodNoAuth},
		{[]Method{0, 2}, []Method{MethodUserPass}, MethodUserPass},
		{[]Method{0}, []Method{MethodUserPass}, MethodNoAcceptable},
		{[]Method{2}, []Method{MethodNoAuth}, MethodNoAcceptable},
		{[]Method{2, 0}, []Method{MethodNoAuth, MethodUserPass}, MethodNoAuth},
		{[]Method{1, 0xff}, []Method{MethodNoAuth, MethodUserPass}, MethodNoAcceptable},
		{[]Method{0}, nil, MethodNoAcceptable},
	}
	for _, tt := range tests {
		g, _, err := ParseGreeting(AppendGreeting(nil, tt.offer...))
		if err != nil {
			t.Fatal(err)
		}
		if got := g.Choose(tt.prefs...); got != tt.want {
			t.Errorf("offer %v prefs %v: Choose = %v, want %v", tt.offer, tt.prefs, got, tt.want)
		}
	}
	var zero Greeting
	if zero.Offers(MethodNoAuth) || zero.Choose(MethodNoAuth) != MethodNoAcceptable {
		t.Error("zero Greeting must offer nothing")
	}
}

func TestMethodSelectionRoundTrip(t *testing.T) {
	for _, m := range []Method{MethodNoAuth, MethodUserPass, MethodNoAcceptable} {
		b := AppendMethodSelection([]byte("x"), m)
		if !bytes.Equal(b, []byte{'x', 5, byte(m)}) {
			t.Errorf("AppendMethodSelection(%v) = %x", m, b)
		}
		got := checkComplete(t, erase(ParseMethodSelection), b[1:]).(Method)
		if got != m {
			t.Errorf("round trip %v -> %v", m, got)
		}
	}
	if _, _, err := ParseMethodSelection([]byte{4}); !errors.Is(err, ErrVersion) {
		t.Errorf("version 4: %v", err)
	}
}

var userPassCases = []struct {
	name    string
	in      []byte
	want    UserPass
	wantErr error
}{
	{"simple", []byte("\x01\x05alice\x06s3cret"), UserPass{"alice", "s3cret"}, nil},
	{"binary", []byte("\x01\x02\x00\xff\x03:\n\x00"), UserPass{"\x00\xff", ":\n\x00"}, nil},
	{"empty password", []byte("\x01\x03bob\x00"), UserPass{"bob", ""}, nil},
	{"empty both", []byte("\x01\x00\x00"), UserPass{}, nil},
	{"max", append(append([]byte("\x01\xff"+strings.Repeat("u", 255)), 0xff), strings.Repeat("p", 255)...),
		UserPass{strings.Repeat("u", 255), strings.Repeat("p", 255)}, nil},
	{"socks5 version", []byte("\x05\x05alice\x06s3cret"), UserPass{}, ErrVersion},
	{"version 0", []byte("\x00"), UserPass{}, ErrVersion},
}

func TestParseUserPass(t *testing.T) {
	for _, tt := range userPassCases {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantErr != nil {
				_, n, err := ParseUserPass(tt.in)
				if !errors.Is(err, tt.wantErr) || n != 0 {
					t.Fatalf("n=%d err=%v, want 0 and %v", n, err, tt.wantErr)
				}
				return
			}
			got := checkComplete(t, erase(ParseUserPass), tt.in).(UserPass)
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			enc, err := AppendUserPass(nil, got)
			if err != nil || !bytes.Equal(enc, tt.in) {
				t.Errorf("re-encoded %q (err %v), want %q", enc, err, tt.in)
			}
		})
	}
	if _, err := AppendUserPass(nil, UserPass{Username: strings.Repeat("u", 256)}); !errors.Is(err, ErrMalformed) {
		t.Errorf("AppendUserPass with 256-byte user: %v", err)
	}
}

func TestParseUserPassDoesNotAlias(t *testing.T) {
	buf := []byte("\x01\x05alice\x06s3cret")
	up, _, err := ParseUserPass(buf)
	if err != nil {
		t.Fatal(err)
	}
	clear(buf)
	if up.Username != "alice" || up.Password != "s3cret" {
		t.Errorf("parsed strings alias the input: %+v", up)
	}
}

func TestAuthStatus(t *testing.T) {
	for _, ok := range []bool{true, false} {
		b := AppendAuthStatus(nil, ok)
		want := []byte{1, AuthFailure}
		if ok {
			want = []byte{1, AuthSuccess}
		}
		if !bytes.Equal(b, want) {
			t.Errorf("AppendAuthStatus(%v) = %x, want %x", ok, b, want)
		}
		got := checkComplete(t, erase(func(b []byte) (bool, int, error) { return ParseAuthStatus(b) }), b).(bool)
		if got != ok {
			t.Errorf("round trip %v -> %v", ok, got)
		}
	}
	if _, _, err := ParseAuthStatus([]byte{5, 0}); !errors.Is(err, ErrVersion) {
		t.Errorf("version 5: %v", err)
	}
}
