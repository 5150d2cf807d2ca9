package socks

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

var httpCases = []struct {
	name    string
	in      string
	want    HTTPConnect
	wantErr error
}{
	{"curl", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: curl/8.5.0\r\nProxy-Connection: Keep-Alive\r\n\r\n",
		HTTPConnect{Dest: Addr{Host: "example.com", Port: 443}}, nil},
	{"minimal", "CONNECT a:1 HTTP/1.1\r\n\r\n", HTTPConnect{Dest: Addr{Host: "a", Port: 1}}, nil},
	{"http/1.0 bare LF", "CONNECT example.org:80 HTTP/1.0\nX: y\n\n",
		HTTPConnect{Dest: Addr{Host: "example.org", Port: 80}}, nil},
	{"ipv6", "CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n",
		HTTPConnect{Dest: Addr{IP: ip("2001:db8::1"), Port: 8443}}, nil},
	{"ipv4", "CONNECT 192.0.2.1:22 HTTP/1.1\r\n\r\n", HTTPConnect{Dest: Addr{IP: ip("192.0.2.1"), Port: 22}}, nil},
	{"basic auth", "CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n",
		HTTPConnect{Dest: Addr{Host: "example.com", Port: 443}, HasAuth: true, User: "alice", Password: "s3cret"}, nil},
	{"basic auth case and spaces", "CONNECT example.com:443 HTTP/1.1\r\nproxy-authorization:   basic   Ym9iOnBhOnNz  \r\n\r\n",
		HTTPConnect{Dest: Addr{Host: "example.com", Port: 443}, HasAuth: true, User: "bob", Password: "pa:ss"}, nil},
	{"basic empty password", "CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Basic Ym9iOg==\r\n\r\n",
		HTTPConnect{Dest: Addr{Host: "h", Port: 1}, HasAuth: true, User: "bob"}, nil},
	{"other scheme ignored", "CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Bearer abc\r\n\r\n",
		HTTPConnect{Dest: Addr{Host: "h", Port: 1}}, nil},
	{"empty header value", "CONNECT h:65535 HTTP/1.1\r\nX-Empty:\r\n\r\n", HTTPConnect{Dest: Addr{Host: "h", Port: 65535}}, nil},

	{"get", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", HTTPConnect{}, ErrNotConnect},
	{"get absolute", "GET http://example.com/ HTTP/1.1\r\n", HTTPConnect{}, ErrNotConnect},
	{"post", "POST /x HTTP/1.1\r\n", HTTPConnect{}, ErrNotConnect},
	{"lowercase connect", "connect h:1 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrNotConnect},
	{"method only", "OPTIONS\r\n\r\n", HTTPConnect{}, ErrNotConnect},
	{"bad method token", "CON(NECT h:1 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"no version", "CONNECT h:1\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"double space", "CONNECT  h:1 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"trailing space", "CONNECT h:1 HTTP/1.1 \r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"http/2", "CONNECT h:1 HTTP/2.0\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"http/0.9", "CONNECT h:1\n", HTTPConnect{}, ErrMalformed},
	{"no port", "CONNECT example.com HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"empty port", "CONNECT example.com: HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"port 0", "CONNECT example.com:0 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"port 65536", "CONNECT example.com:65536 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"port sign", "CONNECT example.com:+80 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"port long", "CONNECT example.com:000080 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"unbracketed ipv6", "CONNECT 2001:db8::1:443 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"unbracketed ipv6 garbage", "CONNECT 2001:db8::g:443 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrAddrTypeNotSupported},
	{"bracketed ipv4", "CONNECT [192.0.2.1]:443 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"bracketed name", "CONNECT [example.com]:443 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"zone", "CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrAddrTypeNotSupported},
	{"empty host", "CONNECT :443 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrAddrTypeNotSupported},
	{"userinfo", "CONNECT u@h:443 HTTP/1.1\r\n\r\n", HTTPConnect{}, ErrAddrTypeNotSupported},
	{"header without colon", "CONNECT h:1 HTTP/1.1\r\nHost h\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"space before colon", "CONNECT h:1 HTTP/1.1\r\nHost : h\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"obs-fold", "CONNECT h:1 HTTP/1.1\r\nX: a\r\n b\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"bad base64", "CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Basic !!!!\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"basic without colon", "CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Basic YWxpY2U=\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"basic without credentials", "CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Basic\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"auth twice", "CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Basic YTpi\r\nProxy-Authorization: Basic YTpi\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"empty request line", "\r\n\r\n", HTTPConnect{}, ErrMalformed},
	{"oversized headers 300KB", "CONNECT h:1 HTTP/1.1\r\nX: " + strings.Repeat("a", 300<<10) + "\r\n\r\n", HTTPConnect{}, ErrHeaderTooLarge},
	{"endless request line", "CONNECT " + strings.Repeat("a", MaxHTTPHeaderBytes), HTTPConnect{}, ErrHeaderTooLarge},
}

func TestParseHTTPConnect(t *testing.T) {
	for _, tt := range httpCases {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			if tt.wantErr != nil {
				_, n, err := ParseHTTPConnect(in)
				if !errors.Is(err, tt.wantErr) || n != 0 {
					t.Fatalf("n=%d err=%v, want 0 and %v", n, err, tt.wantErr)
				}
				return
			}
			got := checkComplete(t, erase(ParseHTTPConnect), in).(HTTPConnect)
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			enc := AppendHTTPConnect(nil, got)
			again := checkComplete(t, erase(ParseHTTPConnect), enc).(HTTPConnect)
			if again != got {
				t.Errorf("round trip %+v -> %q -> %+v", got, enc, again)
			}
		})
	}
}

func TestHTTPHeaderCap(t *testing.T) {
	head := "CONNECT h:1 HTTP/1.1\r\nX: "
	pad := MaxHTTPHeaderBytes - len(head) - len("\r\n\r\n")
	exact := head + strings.Repeat("a", pad) + "\r\n\r\n"
	if len(exact) != MaxHTTPHeaderBytes {
		t.Fatalf("test setup: %d bytes", len(exact))
	}
	req, n, err := ParseHTTPConnect([]byte(exact + "tunnel"))
	if err != nil || n != MaxHTTPHeaderBytes || req.Dest.Host != "h" {
		t.Errorf("header of exactly the cap: n=%d err=%v", n, err)
	}
	over := head + strings.Repeat("a", pad+1) + "\r\n\r\n"
	for _, in := range []string{over, over[:MaxHTTPHeaderBytes]} {
		if _, n, err := ParseHTTPConnect([]byte(in)); !errors.Is(err, ErrHeaderTooLarge) || n != 0 {
			t.Errorf("%d bytes: n=%d err=%v, want ErrHeaderTooLarge", len(in), n, err)
		}
	}
	if _, _, err := ParseHTTPConnect([]byte(over[:MaxHTTPHeaderBytes-1])); !errors.Is(err, ErrNeedMore) {
		t.Errorf("one byte under the cap without end: %v, want ErrNeedMore", err)
	}
}

// TestParseHTTPConnectFromNetHTTP parses what Go's own HTTP client writes for CONNECT.
func TestParseHTTPConnectFromNetHTTP(t *testing.T) {
	for _, host := range []string{"example.com:443", "[2001:db8::7]:8443"} {
		req, err := http.NewRequest(http.MethodConnect, "http://"+host, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Proxy-Authorization", "Basic "+"YWxpY2U6czNjcmV0")
		var buf bytes.Buffer
		if err := req.Write(&buf); err != nil {
			t.Fatal(err)
		}
		got, n, err := ParseHTTPConnect(buf.Bytes())
		if err != nil || n != buf.Len() {
			t.Fatalf("%q: n=%d err=%v", buf.String(), n, err)
		}
		if got.Dest.String() != host || !got.HasAuth || got.User != "alice" || got.Password != "s3cret" {
			t.Errorf("%q parsed as %+v", buf.String(), got)
		}
	}
}

// TestHTTPResponse checks the encoded responses with net/http's response parser.
func TestHTTPResponse(t *testing.T) {
	tests := []struct {
		status     int
		wantStatus int
		header     string
		value      string
	}{
		{StatusOK, 200, "", ""},
		{StatusBadRequest, 400, "", ""},
		{StatusForbidden, 403, "", ""},
		{StatusMethodNotAllowed, 405, "Allow", "CONNECT"},
		{StatusProxyAuthRequired, 407, "Proxy-Authenticate", `Basic realm="nat464"`},
		{StatusRequestTimeout, 408, "", ""},
		{StatusBadGateway, 502, "", ""},
		{StatusGatewayTimeout, 504, "", ""},
		{StatusInternalServerError, 500, "", ""},
		{418, 500, "", ""},
	}
	for _, tt := range tests {
		b := AppendHTTPResponse([]byte("x"), tt.status)
		if d := AppendHTTPError([]byte("x"), tt.status, ""); !bytes.Equal(d, b) {
			t.Errorf("%d: AppendHTTPError without detail differs: %q", tt.status, d)
		}
		if b[0] != 'x' {
			t.Fatal("prefix lost")
		}
		b = b[1:]
		if tt.status == StatusOK {
			if string(b) != "HTTP/1.1 200 Connection established\r\n\r\n" {
				t.Errorf("200 = %q", b)
			}
			continue
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatalf("%d: %v in %q", tt.status, err, b)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tt.wantStatus || !resp.Close || len(body) == 0 ||
			resp.ContentLength != int64(len(body)) || !strings.HasSuffix(string(b), string(body)) {
			t.Errorf("%d: status %d close %v body %q in %q", tt.status, resp.StatusCode, resp.Close, body, b)
		}
		if tt.header != "" && resp.Header.Get(tt.header) != tt.value {
			t.Errorf("%d: %s = %q, want %q", tt.status, tt.header, resp.Header.Get(tt.header), tt.value)
		}
	}
}

// TestHTTPErrorDetail: the detail line follows the status text in the body, Content-Length
// counts it, control characters cannot split the response, and it is bounded.
func TestHTTPErrorDetail(t *testing.T) {
	for _, tc := range []struct{ detail, want string }{
		{`policy: x.example:443 denied by rule "deny *.example" (line 1)`, "Forbidden\npolicy: x.example:443 denied by rule \"deny *.example\" (line 1)\n"},
		{"a\r\nInjected: 1\x00", "Forbidden\na  Injected: 1 \n"},
		{strings.Repeat("x", 600), "Forbidden\n" + strings.Repeat("x", 512) + "\n"},
	} {
		b := AppendHTTPError(nil, StatusForbidden, tc.detail)
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 403 || string(body) != tc.want || resp.Header.Get("Injected") != "" {
			t.Errorf("detail %.40q: %d %q, want 403 %q", tc.detail, resp.StatusCode, body, tc.want)
		}
	}
	if got := string(AppendHTTPError(nil, StatusOK, "x")); got != "HTTP/1.1 200 Connection established\r\n\r\n" {
		t.Errorf("200 with detail: %q", got)
	}
}
