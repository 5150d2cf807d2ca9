package sockstest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/socks"
)

// TestInteropCurl runs curl, an independent client of all three protocols, through fakeProxy
// (which parses with package socks and relays every tunnel to a local HTTP server) and checks
// both the destination the proxy parsed and the body curl got.
func TestInteropCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but curl is not installed: the interop test cannot run (%v)", err)
		}
		t.Skip("curl not installed")
	}
	// os/exec keeps a few pipes of its own after the first run; count sockets only.
	fds := countSockets()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello from upstream"))
	}))
	defer func() {
		srv.Close()
		if after := countSockets(); after > fds {
			t.Errorf("socket leak: %d before, %d after", fds, after)
		}
	}()
	alice := &socks.UserPass{Username: "alice", Password: "s3cret"}
	ip := netip.MustParseAddr
	tests := []struct {
		name  string
		creds *socks.UserPass
		proxy string // scheme://[userinfo@] in front of the proxy address
		extra []string
		url   string
		want  socks.Addr
	}{
		{"socks5h name", nil, "socks5h://", nil, "http://example.com/", socks.Addr{Host: "example.com", Port: 80}},
		{"socks5 ipv6", nil, "socks5://", nil, "http://[2001:db8::1]:8080/", socks.Addr{IP: ip("2001:db8::1"), Port: 8080}},
		{"socks5 ipv4", nil, "socks5://", nil, "http://192.0.2.7:81/", socks.Addr{IP: ip("192.0.2.7"), Port: 81}},
		{"socks5h auth", alice, "socks5h://alice:s3cret@", nil, "http://example.org:8080/", socks.Addr{Host: "example.org", Port: 8080}},
		{"socks4", nil, "socks4://", nil, "http://192.0.2.1/", socks.Addr{IP: ip("192.0.2.1"), Port: 80}},
		{"socks4a", nil, "socks4a://", nil, "http://example.com:8000/", socks.Addr{Host: "example.com", Port: 8000}},
		{"http connect auth", alice, "http://alice:s3cret@", []string{"-p"}, "http://example.com:8080/", socks.Addr{Host: "example.com", Port: 8080}},
		{"http connect ipv6", nil, "http://", []string{"-p"}, "http://[2001:db8::2]:81/", socks.Addr{IP: ip("2001:db8::2"), Port: 81}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &fakeProxy{creds: tt.creds, upstream: srv.Listener.Addr().String(), seen: make(chan socks.Addr, 4)}
			addr := startProxy(t, p)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			args := append([]string{"-q", "-sS", "--max-time", "15", "-x", tt.proxy + addr}, tt.extra...)
			cmd := exec.CommandContext(ctx, curl, append(args, tt.url)...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
			out, err := cmd.CombinedOutput()
			if err != nil || string(out) != "hello from upstream" {
				t.Fatalf("curl %v: %v, output %q", cmd.Args, err, strings.TrimSpace(string(out)))
			}
			select {
			case got := <-p.seen:
				if got != tt.want {
					t.Errorf("proxy parsed destination %v, want %v", got, tt.want)
				}
			default:
				t.Error("proxy saw no destination")
			}
		})
	}
}

func countSockets() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}
