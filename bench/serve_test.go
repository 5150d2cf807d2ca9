package main

import (
	"context"
	"net"
	"testing"
)

func TestServerDual(t *testing.T) {
	checkLeaks(t)
	s := &Server{Dual: true}
	addr, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, port, _ := net.SplitHostPort(addr)
	for _, host := range []string{"127.0.0.1", "::1"} {
		tg := Target{Addr: net.JoinHostPort(host, port)}
		if _, err := oneRequest(context.Background(), tg, false, make([]byte, 2*reqSize)); err != nil {
			t.Errorf("%s: %v", tg.Addr, err)
		}
	}
}
