// Command demoapp is the IPv4-only application of `make demo` and of the end-to-end tests:
// `demoapp serve ADDR` serves a fixed page on ADDR (an IPv4 address), and `demoapp fetch URL
// [PROXY]` prints what a GET of URL returns, through PROXY (socks5h://HOST:PORT, say) if given
// (for machines without curl). `demoapp serve6 ADDR` is the other side of the demo: an
// IPv6-only server on ADDR whose page names the address the connection came from.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// Page is what the app serves at /.
const Page = "hello from an IPv4-only app on 127.0.0.1\n"

func main() {
	if len(os.Args) < 3 || len(os.Args) > 4 || len(os.Args) == 4 && os.Args[1] != "fetch" {
		fmt.Fprintln(os.Stderr, "usage: demoapp serve 127.0.0.1:PORT | demoapp serve6 [::1]:PORT | demoapp fetch URL [PROXY]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2])
	case "serve6":
		err = serve6(os.Args[2])
	case "fetch":
		err = fetch(os.Args[2], os.Args[3:]...)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demoapp:", err)
		os.Exit(1)
	}
}

func serve(addr string) error {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "demoapp: serving on %s (IPv4 only)\n", ln.Addr())
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, Page) })}
	return srv.Serve(ln)
}

// serve6 serves, on an IPv6 address only, a page that names the client's address.
func serve6(addr string) error {
	ln, err := net.Listen("tcp6", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "demoapp: serving on %s (IPv6 only)\n", ln.Addr())
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from an IPv6-only server on %s: you came from %s\n", ln.Addr(), r.RemoteAddr)
		})}
	return srv.Serve(ln)
}

func fetch(rawURL string, proxy ...string) error {
	c := &http.Client{Timeout: 5 * time.Second}
	if len(proxy) > 0 {
		u, err := url.Parse(proxy[0])
		if err != nil {
			return err
		}
		c.Transport = &http.Transport{Proxy: http.ProxyURL(u)}
	}
	resp, err := c.Get(rawURL)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(os.Stdout, resp.Body)
	return err
}
