package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// TestHTTPConnect runs the client's side of HTTP CONNECT against scripted
// proxy answers, written in pieces as a slow proxy might send them.
func TestHTTPConnect(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name    string
		answer  []string
		wantErr error
	}{
		{"200", []string{"HTTP/1.1 200 Connection established\r\n\r\n"}, nil},
		{"200 with headers, split", []string{"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r", "\n\r\n"}, nil},
		{"407", []string{"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"}, errHTTPStatus},
		{"502", []string{"HTTP/1.1 502 Bad Gateway\r\n\r\n"}, errHTTPStatus},
		{"not http", []string{"SSH-2.0-x\r\n\r\n"}, errHTTPHeader},
		{"bytes after the header", []string{"HTTP/1.1 200 OK\r\n\r\nhello"}, errHTTPHeader},
		{"header too long", []string{"HTTP/1.1 200 OK\r\nX: " + string(make([]byte, maxHTTPResponse)) + "\r\n\r\n"}, errHTTPHeader},
		{"closed early", []string{"HTTP/1.1 200 OK\r\n"}, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, proxy := net.Pipe()
			var wg sync.WaitGroup
			defer wg.Wait()
			defer client.Close() // first: unblocks a proxy write the client stopped reading
			wg.Go(func() {
				defer proxy.Close()
				req := make([]byte, 256)
				n, _ := proxy.Read(req)
				if want := "CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n"; string(req[:n]) != want {
					t.Errorf("request %q, want %q", req[:n], want)
				}
				for _, a := range tt.answer {
					if _, err := proxy.Write([]byte(a)); err != nil {
						return
					}
				}
			})
			client.SetDeadline(time.Now().Add(5 * time.Second))
			err := httpConnect(client, "localhost:80")
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("httpConnect: %v, want %v", err, tt.wantErr)
			}
		})
	}
}
