package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var socksReplyCases = []struct {
	name string
	in   []byte
	want error
}{
	{"ipv4 ok", []byte{5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90}, nil},
	{"ipv6 ok", append([]byte{5, 0, 0, 4}, make([]byte, 18)...), nil},
	{"domain ok", []byte{5, 0, 0, 3, 3, 'a', '.', 'b', 0, 80}, nil},
	// found by FuzzSOCKSReply: a zero-length name is the shortest reply (7 bytes)
	{"domain empty", []byte{5, 0, 0, 3, 0, 0, 80}, nil},
	{"refused", []byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}, errSOCKSRep},
	{"bad version", []byte{4, 0, 0, 1, 0, 0, 0, 0, 0, 0}, errSOCKSVer},
	{"bad atyp", []byte{5, 0, 0, 9, 0, 0, 0, 0, 0, 0}, errSOCKSAtyp},
	{"short header", []byte{5, 0, 0}, errShort},
	{"short ipv6", []byte{5, 0, 0, 4, 0, 0}, errShort},
}

func TestSOCKSParseReply(t *testing.T) {
	for _, tt := range socksReplyCases {
		t.Run(tt.name, func(t *testing.T) {
			err := socksParseReply(tt.in)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("socksParseReply(%x) = %v, want %v", tt.in, err, tt.want)
			}
		})
	}
}

func TestSOCKSRequest(t *testing.T) {
	tests := []struct {
		dest    string
		want    []byte
		wantErr error
	}{
		{"127.0.0.1:8080", []byte{5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90}, nil},
		{"192.0.2.7:1", []byte{5, 1, 0, 1, 192, 0, 2, 7, 0, 1}, nil},
		{"[::1]:80", append(append([]byte{5, 1, 0, 4}, make([]byte, 15)...), 1, 0, 80), nil},
		{"localhost:443", []byte{5, 1, 0, 3, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 1, 0xbb}, nil},
		{"app.bench.test:1", append(append([]byte{5, 1, 0, 3, 14}, "app.bench.test"...), 0, 1), nil},
		{"example.org", nil, errSOCKSDest},
		{":80", nil, errSOCKSDest},
		{"example.org:65536", nil, errSOCKSDest},
		{"example.org:http", nil, errSOCKSDest},
		{strings.Repeat("a", 256) + ":80", nil, errSOCKSDest},
	}
	for _, tt := range tests {
		got, err := socksRequest(tt.dest)
		if !errors.Is(err, tt.wantErr) || !bytes.Equal(got, tt.want) {
			t.Errorf("socksRequest(%q) = %x, %v; want %x, %v", tt.dest, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzSOCKSReply(f *testing.F) {
	for _, tt := range socksReplyCases {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := socksReplyLen(b)
		if err == nil && (n < 4+1+2 || n > 4+1+255+2) {
			t.Fatalf("socksReplyLen(%x) = %d out of range", b, n)
		}
		if err := socksParseReply(b); err == nil && len(b) < n {
			t.Fatalf("accepted a short reply %x", b)
		}
	})
}
