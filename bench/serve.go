package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
)

// Modes of the app. The first byte a client sends picks the mode, so every
// proxy under test needs a single mapping (one port) for all tests.
const (
	ModeEcho   byte = 'E' // echo every byte until the client's EOF, then close
	ModeOnce   byte = 'O' // read one request of reqSize bytes, echo it, close first
	ModeSink   byte = 'K' // read and discard until EOF
	ModeSource byte = 'S' // write an endless stream until the peer goes away
	ModeHold   byte = 'H' // echo the mode byte, then hold the flow idle until EOF
)

// reqSize is the request and response size of the rate test.
const reqSize = 64

// bulkChunk is the buffer size of the bulk load and the app's source/sink.
const bulkChunk = 256 << 10

// Server is the application the proxies forward to. The zero value listens
// on 127.0.0.1 with an ephemeral port.
type Server struct {
	// Addr is the IPv4 address to listen on; if empty, 127.0.0.1:0.
	Addr string
	// Dual also listens on [::1] at the same port, so that a name listing
	// both loopback addresses reaches the app whichever one a proxy picks
	// (a dual-stack origin, as a user's would be).
	Dual bool

	mu    sync.Mutex
	lns   []net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func (s *Server) addr() string {
	if s.Addr == "" {
		return "127.0.0.1:0"
	}
	return s.Addr
}

// dualTries bounds the search for a port free on both loopback addresses
// (an ephemeral IPv4 port may be taken on [::1]).
const dualTries = 20

// Start opens the listeners and returns the IPv4 address.
func (s *Server) Start() (string, error) {
	lns, err := s.listen()
	if err != nil {
		return "", fmt.Errorf("bench: serve: %w", err)
	}
	s.mu.Lock()
	s.lns = lns
	s.conns = make(map[net.Conn]struct{})
	s.mu.Unlock()
	for _, ln := range lns {
		s.wg.Add(1)
		go s.accept(ln)
	}
	return lns[0].Addr().String(), nil
}

func (s *Server) listen() ([]net.Listener, error) {
	_, p, _ := net.SplitHostPort(s.addr())
	ephemeral := p == "0"
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp4", s.addr())
		if err != nil || !s.Dual {
			return []net.Listener{ln}, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
		if err == nil {
			return []net.Listener{ln, ln6}, nil
		}
		ln.Close()
		if !ephemeral || !errors.Is(err, syscall.EADDRINUSE) || try == dualTries {
			return nil, err
		}
	}
}

// Close stops accepting, closes every open flow and waits for the handlers.
func (s *Server) Close() {
	s.mu.Lock()
	for _, ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Open returns the number of flows the app holds.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // EMFILE and friends: keep serving
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handle(c)
	}
}

func (s *Server) handle(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		return
	}
	switch first[0] {
	case ModeEcho:
		if _, err := c.Write(first[:]); err == nil {
			io.Copy(c, c)
		}
	case ModeOnce:
		buf := make([]byte, reqSize)
		buf[0] = first[0]
		if _, err := io.ReadFull(c, buf[1:]); err == nil {
			c.Write(buf)
		}
	case ModeSink:
		buf := make([]byte, bulkChunk)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	case ModeSource:
		buf := make([]byte, bulkChunk)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	case ModeHold:
		if _, err := c.Write(first[:]); err == nil {
			io.Copy(io.Discard, c)
		}
	}
}

// readyPrefix starts the line serve prints once it listens.
const readyPrefix = "READY "

func cmdServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("listen", "127.0.0.1:0", "IPv4 address to listen on")
	dual := fs.Bool("dual", false, "also listen on [::1] at the same port")
	fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := &Server{Addr: *addr, Dual: *dual}
	a, err := s.Start()
	if err != nil {
		return err
	}
	fmt.Printf("%s%s\n", readyPrefix, a)
	<-ctx.Done()
	s.Close()
	return nil
}
