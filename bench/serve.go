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

// Server is the IPv4-only application the proxies forward to. The zero value
// listens on 127.0.0.1 with an ephemeral port.
type Server struct {
	// Addr is the address to listen on; if empty, 127.0.0.1:0.
	Addr string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func (s *Server) addr() string {
	if s.Addr == "" {
		return "127.0.0.1:0"
	}
	return s.Addr
}

// Start opens the listener and returns its address.
func (s *Server) Start() (string, error) {
	ln, err := net.Listen("tcp4", s.addr())
	if err != nil {
		return "", fmt.Errorf("bench: serve: %w", err)
	}
	s.mu.Lock()
	s.ln = ln
	s.conns = make(map[net.Conn]struct{})
	s.mu.Unlock()
	s.wg.Add(1)
	go s.accept(ln)
	return ln.Addr().String(), nil
}

// Close stops accepting, closes every open flow and waits for the handlers.
func (s *Server) Close() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
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
	fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := &Server{Addr: *addr}
	a, err := s.Start()
	if err != nil {
		return err
	}
	fmt.Printf("%s%s\n", readyPrefix, a)
	<-ctx.Done()
	s.Close()
	return nil
}
