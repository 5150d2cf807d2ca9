// Command v4app is the lab's IPv4-only application with no proxy support, as a static Go binary
// (CGO_ENABLED=0: Go's own resolver reads /etc/resolv.conf and /etc/hosts, no libc): it resolves
// a URL's host to IPv4 addresses only, connects over IPv4, fetches the URL, and prints the
// SHA-256 and length of the body, then the address it connected to. The transparent-egress tests
// run it in the lab pod, whose only IPv4 is loopback (-net tcp dials both families instead, as
// a dual-stack Go program would; -net tcp4 is the default).
//
//	v4app http://v4only.example/gen?n=1000000
//	-> sha256=... bytes=1000000 peer=127.100.0.1:80
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	timeout := flag.Duration("timeout", 10*time.Second, "bound on the whole request")
	network := flag.String("net", "tcp4", "the network to dial: tcp4 (an IPv4-only app) or tcp (both families)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: v4app [-timeout D] [-net tcp4|tcp] URL")
		os.Exit(2)
	}
	var peer string
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, *network, addr)
			if err == nil {
				peer = c.RemoteAddr().String()
			}
			return c, err
		}}
	client := &http.Client{Transport: tr, Timeout: *timeout}
	resp, err := client.Get(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "v4app:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		fmt.Fprintln(os.Stderr, "v4app: reading the body:", err)
		os.Exit(1)
	}
	fmt.Printf("sha256=%x bytes=%d peer=%s\n", h.Sum(nil), n, peer)
}
