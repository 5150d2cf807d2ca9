package main

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
)

// serveSOCKS5Min runs go-socks5-min's handler behind a test listener.
func serveSOCKS5Min(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { socks5MinServe(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// TestSOCKS5MinDests asks go-socks5-min for the dual-stack app by IPv4 and
// IPv6 literal and by a name from /etc/hosts, through the load generator's
// client, and for a closed port.
func TestSOCKS5MinDests(t *testing.T) {
	checkLeaks(t)
	s := &Server{Dual: true}
	app, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	proxy := serveSOCKS5Min(t)
	_, port, _ := net.SplitHostPort(app)
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			tg := Target{Addr: proxy, Dest: net.JoinHostPort(host, port)}
			r := Rate(context.Background(), RateConfig{Target: tg, Workers: 2, Window: shortWindow})
			if r.Errors != 0 || r.Conns == 0 {
				t.Fatalf("%d conns, %d errors (%s)", r.Conns, r.Errors, r.ErrorSample)
			}
		})
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	if _, err := (Target{Addr: proxy, Dest: dead}).Dial(context.Background()); !errors.Is(err, errSOCKSRep) {
		t.Fatalf("CONNECT to a closed port: %v, want %v", err, errSOCKSRep)
	}
}
