package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// The go-socks5-min peer: a deliberately naive SOCKS5 CONNECT server, the
// one a Go programmer writes in an afternoon. A goroutine per connection,
// no-auth only, net.Dial with the default resolver (no cache of its own),
// then io.Copy both ways (which the standard library turns into splice on
// Linux). It stands for "a naive Go server" in the report; it is not a model
// to follow (no connection cap, no shutdown of open flows).

// socks5MinHandshakeTimeout bounds a client's greeting and request.
const socks5MinHandshakeTimeout = 10 * time.Second

var errMinRequest = errors.New("socks5min: bad request")

func cmdSOCKS5Min(args []string) error {
	fs := flag.NewFlagSet("socks5min", flag.ExitOnError)
	addr := fs.String("listen", "127.0.0.1:1080", "address to listen on")
	fs.Parse(args)
	ctx, stop := sigContext()
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("bench: socks5min: %w", err)
	}
	context.AfterFunc(ctx, func() { ln.Close() })
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			continue // EMFILE and friends: keep serving
		}
		go socks5MinServe(c)
	}
}

func socks5MinServe(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(socks5MinHandshakeTimeout))
	dest, err := socks5MinRequest(c)
	if err != nil {
		return
	}
	up, err := net.Dial("tcp", dest)
	if err != nil {
		c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}) // connection refused
		return
	}
	defer up.Close()
	if _, err := c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	var wg sync.WaitGroup
	wg.Go(func() { socks5MinPipe(up, c) })
	socks5MinPipe(c, up)
	wg.Wait()
}

// socks5MinPipe copies until EOF, then passes the half-close on.
func socks5MinPipe(dst, src net.Conn) {
	io.Copy(dst, src)
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// socks5MinRequest reads the greeting (answering no-auth) and a CONNECT
// request, and returns its destination as host:port.
func socks5MinRequest(c net.Conn) (string, error) {
	b := make([]byte, 262)
	if _, err := io.ReadFull(c, b[:2]); err != nil || b[0] != 5 {
		return "", errMinRequest
	}
	if _, err := io.ReadFull(c, b[:b[1]]); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte{5, 0}); err != nil {
		return "", err
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil || b[0] != 5 || b[1] != 1 {
		return "", errMinRequest
	}
	var host string
	switch b[3] {
	case 1, 4:
		n := map[byte]int{1: 4, 4: 16}[b[3]]
		if _, err := io.ReadFull(c, b[:n]); err != nil {
			return "", err
		}
		a, _ := netip.AddrFromSlice(b[:n])
		host = a.String()
	case 3:
		if _, err := io.ReadFull(c, b[:1]); err != nil {
			return "", err
		}
		n := int(b[0])
		if _, err := io.ReadFull(c, b[:n]); err != nil {
			return "", err
		}
		host = string(b[:n])
	default:
		return "", errMinRequest
	}
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(b)))), nil
}
