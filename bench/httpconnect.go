package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
)

// maxHTTPResponse bounds the response header an HTTP CONNECT proxy may send.
const maxHTTPResponse = 4 << 10

// httpConnect runs an HTTP/1.1 CONNECT to dest over c, as Go's net/http
// and curl do: the request with a Host header, then the response header up
// to its empty line. Only 2xx is success. The app never speaks first, so no
// tunnel byte can arrive before the client's request; any that did would be
// an error rather than silently lost.
func httpConnect(c net.Conn, dest string) error {
	req := "CONNECT " + dest + " HTTP/1.1\r\nHost: " + dest + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return fmt.Errorf("bench: http connect: %w", err)
	}
	buf := make([]byte, 0, 512)
	for {
		if len(buf) >= maxHTTPResponse {
			return fmt.Errorf("%w: no end of header in %d bytes", errHTTPHeader, len(buf))
		}
		buf = slices.Grow(buf, 1)
		n, err := c.Read(buf[len(buf):min(cap(buf), maxHTTPResponse)])
		buf = buf[:len(buf)+n]
		if end := bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
			if end+4 != len(buf) {
				return fmt.Errorf("%w: %d bytes after the header", errHTTPHeader, len(buf)-end-4)
			}
			return httpParseStatus(buf[:end])
		}
		if err != nil {
			return fmt.Errorf("bench: http connect: %w", err)
		}
	}
}

// httpParseStatus checks the status line of a CONNECT response header:
// HTTP/1.x, then a 2xx code.
func httpParseStatus(header []byte) error {
	line, _, _ := bytes.Cut(header, []byte("\r\n"))
	proto, rest, _ := bytes.Cut(line, []byte(" "))
	code, _, _ := bytes.Cut(rest, []byte(" "))
	n, err := strconv.Atoi(string(code))
	if !bytes.HasPrefix(proto, []byte("HTTP/1.")) || err != nil || len(code) != 3 {
		return fmt.Errorf("%w: %.40q", errHTTPHeader, line)
	}
	if n < 200 || n > 299 {
		return fmt.Errorf("%w: status %d", errHTTPStatus, n)
	}
	return nil
}
