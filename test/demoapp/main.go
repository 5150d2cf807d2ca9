// Command demoapp is the IPv4-only application of `make demo` and of the end-to-end tests:
// `demoapp serve ADDR` serves a fixed page on ADDR (an IPv4 address), and `demoapp fetch URL`
// prints what a GET of URL returns (for machines without curl).
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// Page is what the app serves at /.
const Page = "hello from an IPv4-only app on 127.0.0.1\n"

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: demoapp serve 127.0.0.1:PORT | demoapp fetch URL")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2])
	case "fetch":
		err = fetch(os.Args[2])
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

func fetch(url string) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(os.Stdout, resp.Body)
	return err
}
