package forward

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

// FuzzRequestHeader feeds arbitrary bytes to what reads a request: the header pre-scan, then
// net/http's parser. Neither may panic, and whatever passes both must be framed one way only:
// never both a length and chunked, never a length that disagrees with the header.
func FuzzRequestHeader(f *testing.F) {
	for _, s := range []string{
		"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
		"POST http://a.test/ HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
		"POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST http://a.test/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET http://a.test/ HTTP/1.1\r\nX: 1\r\n folded\r\n\r\n",
		"GET http://a.test/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"\r\n\r\nGET http://[::1]:80/ HTTP/1.1\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n",
		"CONNECT a.test:443 HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(b), 4<<10)
		hdr, err := readHeader(br, 4<<10)
		if err != nil {
			return
		}
		if len(hdr) > 4<<10 {
			t.Fatalf("header block of %d bytes past the 4 KiB cap", len(hdr))
		}
		if _, err := checkHeader(hdr); err != nil {
			return
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if len(req.TransferEncoding) > 0 && len(req.Header["Content-Length"]) > 0 {
			t.Fatalf("both framings passed: %q", hdr)
		}
		if len(req.TransferEncoding) > 1 || (len(req.TransferEncoding) == 1 && req.TransferEncoding[0] != "chunked") {
			t.Fatalf("transfer coding %v passed", req.TransferEncoding)
		}
		if _, _, msg := target(req); msg == "" && req.URL.Host == "" {
			t.Fatalf("a request without a host passed target: %q", hdr)
		}
	})
}
