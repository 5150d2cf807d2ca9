package forward

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/nat464/nat464-sidecar/socks"
)

// Errors of the header pre-scan: each is answered with a 400 (431 for ErrHeaderTooLarge) that
// names it, and the connection is closed.
var (
	ErrHeaderTooLarge = errors.New("forward: header block too large")
	ErrObsFold        = errors.New("forward: obsolete line folding (RFC 9112 §5.2)")
	ErrCLAndTE        = errors.New("forward: both Content-Length and Transfer-Encoding (RFC 9112 §6.3)")
	ErrContentLength  = errors.New("forward: bad or conflicting Content-Length")
	ErrTransferCoding = errors.New("forward: unsupported Transfer-Encoding")
	ErrHeaderSyntax   = errors.New("forward: malformed header")
)

// errBufferFull is readHeader's word that br is full without an end of header, and smaller
// than the cap: the caller moves to a larger reader (grow) and asks again.
var errBufferFull = errors.New("forward: header larger than the read buffer")

// grow returns a reader of size bytes that starts with what br holds and goes on with raw,
// which br was reading.
func grow(br *bufio.Reader, raw io.Reader, size int) *bufio.Reader {
	held, _ := br.Peek(br.Buffered())
	return bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(held)), raw), size)
}

// readHeader waits until br holds a whole header block (start line to the empty line) and
// returns it, still unread: net/http parses it next. Empty lines before the start line are
// discarded (RFC 9112 §2.2). It returns ErrHeaderTooLarge when no end is found within max
// bytes, errBufferFull when br's buffer is full before that, and the read error when the peer stops first
// (io.EOF with nothing read means a clean close between messages).
func readHeader(br *bufio.Reader, max int) ([]byte, error) {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return nil, err
		}
		if b[0] != '\r' && b[0] != '\n' {
			break
		}
		_, _ = br.Discard(1)
	}
	for {
		b, _ := br.Peek(br.Buffered())
		if end := headerEnd(b); end > 0 {
			return b[:end], nil
		}
		if len(b) >= max {
			return nil, fmt.Errorf("%w: no end of header within %d bytes", ErrHeaderTooLarge, max)
		}
		if len(b) >= br.Size() {
			return nil, errBufferFull
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return nil, err
		}
	}
}

// headerEnd returns the length of the header block at the start of b (through the empty line,
// CRLF or bare LF), or 0 when b does not hold one yet.
func headerEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		line := b[i : i+j]
		i += j + 1
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return i
		}
	}
}

// checkHeader applies the request-smuggling defences a proxy owes its origins to one header
// block, before net/http parses it: net/http would silently drop a Content-Length next to
// Transfer-Encoding and fold continuation lines, where a proxy must refuse both (RFC 9112
// §6.3, §5.2). It also refuses control characters in field values, more than one
// Transfer-Encoding other than a single "chunked", conflicting Content-Length values, and
// Transfer-Encoding on HTTP/1.0 (which net/http ignores, framing the body differently from an
// HTTP/1.1 origin).
//
// It returns the tokens of the Connection fields (RFC 9110 §7.6.1), which net/http may drop
// from the parsed header before the caller could remove the fields they name.
func checkHeader(block []byte) (conn []string, err error) {
	lines := bytes.Split(bytes.TrimRight(block, "\r\n"), []byte{'\n'})
	if len(lines[0]) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrHeaderSyntax)
	}
	start := bytes.TrimRight(lines[0], "\r")
	http10 := bytes.HasSuffix(start, []byte(" HTTP/1.0")) || bytes.HasPrefix(start, []byte("HTTP/1.0 "))
	var cl []byte
	te := 0
	for _, raw := range lines[1:] {
		line := bytes.TrimSuffix(raw, []byte{'\r'})
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return nil, ErrObsFold
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok || !socks.IsToken(name) {
			return nil, fmt.Errorf("%w: bad field line %.40q", ErrHeaderSyntax, line)
		}
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return nil, fmt.Errorf("%w: control character in field %s", ErrHeaderSyntax, name)
			}
		}
		value = bytes.Trim(value, " \t")
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if !isDigits(value) || (cl != nil && !bytes.Equal(cl, value)) {
				return nil, fmt.Errorf("%w: %.20q", ErrContentLength, value)
			}
			cl = value
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			te++
			if te > 1 || !bytes.EqualFold(value, []byte("chunked")) {
				return nil, fmt.Errorf("%w: %.30q", ErrTransferCoding, value)
			}
		case bytes.EqualFold(name, []byte("Connection")):
			for _, tok := range bytes.Split(value, []byte{','}) {
				if tok = bytes.Trim(tok, " \t"); len(tok) > 0 {
					conn = append(conn, string(tok))
				}
			}
		}
	}
	if te > 0 && cl != nil {
		return nil, ErrCLAndTE
	}
	if te > 0 && http10 {
		return nil, fmt.Errorf("%w: Transfer-Encoding in HTTP/1.0", ErrTransferCoding)
	}
	return conn, nil
}

func isDigits(b []byte) bool {
	if len(b) == 0 || len(b) > 18 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
