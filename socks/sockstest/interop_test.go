package sockstest

import (
	"context"
	"io"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/nat464/nat464-sidecar/socks"
)

// TestInteropXNetProxy drives the package socks parsers and encoders (through fakeProxy) with
// an independent SOCKS5 client, golang.org/x/net/proxy.
func TestInteropXNetProxy(t *testing.T) {
	tests := []struct {
		name  string
		creds *socks.UserPass
		auth  *proxy.Auth
		dest  string
	}{
		{"no auth name", nil, nil, "example.com:443"},
		{"no auth ipv6", nil, nil, "[2001:db8::9]:80"},
		{"user/pass ipv4", &socks.UserPass{Username: "alice", Password: "s3cret"},
			&proxy.Auth{User: "alice", Password: "s3cret"}, "192.0.2.1:22"},
	}
	fds := countFDs()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startProxy(t, &fakeProxy{creds: tt.creds})
			d, err := proxy.SOCKS5("tcp", addr, tt.auth, proxy.Direct)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := d.(proxy.ContextDialer).DialContext(ctx, "tcp", tt.dest)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
				t.Errorf("echo %q, %v", buf, err)
			}
		})
	}
	if after := countFDs(); after > fds {
		t.Errorf("fd leak: %d before, %d after", fds, after)
	}
}
