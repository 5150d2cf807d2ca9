// Command quic is the lab's HTTP/3 pair, a module of its own so that quic-go stays out of the
// sidecar's module: the e2e tests run its server on the lab's IPv4-only and IPv6-only hosts
// and its client in the pod, as an IPv4-only app with no proxy setting would run.
//
//	quic serve -name NAME -listen ADDR[,ADDR] -cert FILE -key FILE
//	quic get -ca FILE [-n N] URL
//
// The server answers every request with "h3 NAME client=ADDR\n", the client's address as the
// server saw it. The client resolves the URL's host for IPv4 only ("udp4", as a program that
// knows no IPv6 does), opens one QUIC connection to it, makes N requests on it and prints
// "peer=ADDR" and the first body. It exits non-zero on any error.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: quic serve|get ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "get":
		err = get(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "quic:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	name := fs.String("name", "h3", "server name in the answers")
	listen := fs.String("listen", "", "comma-separated UDP addresses")
	cert := fs.String("cert", "", "certificate file (PEM)")
	key := fs.String("key", "", "key file (PEM)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		return err
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "h3 %s client=%s\n", *name, r.RemoteAddr)
	})
	errs := make(chan error)
	for _, addr := range strings.Split(*listen, ",") {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		srv := &http3.Server{Handler: handler, TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{pair}})}
		go func() { errs <- srv.Serve(pc) }()
	}
	return <-errs
}

func get(args []string) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	caFile := fs.String("ca", "", "CA certificate file (PEM)")
	n := fs.Int("n", 1, "requests on the one connection")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("get: one URL")
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return errors.New("no certificate in " + *caFile)
	}
	var peer net.Addr
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		Dial: func(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			ua, err := net.ResolveUDPAddr("udp4", addr)
			if err != nil {
				return nil, err
			}
			pc, err := net.ListenUDP("udp4", nil)
			if err != nil {
				return nil, err
			}
			c, err := quic.Dial(ctx, pc, ua, tlsCfg, cfg)
			if err != nil {
				pc.Close()
				return nil, err
			}
			peer = c.RemoteAddr()
			return c, nil
		},
	}
	defer tr.Close()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var first string
	for i := range *n {
		resp, err := client.Get(u.String())
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/3.0" {
			return fmt.Errorf("request %d: %s %s", i, resp.Proto, resp.Status)
		}
		if i == 0 {
			first = string(body)
		}
	}
	fmt.Printf("peer=%s %s", peer, first)
	return nil
}
