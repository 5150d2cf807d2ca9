package proxyproto

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

var (
	client6 = netip.MustParseAddrPort("[2001:db8:2::20]:40123")
	pod6    = netip.MustParseAddrPort("[2001:db8:1::10]:8080")
	client4 = netip.MustParseAddrPort("192.0.2.7:51000")
	pod4    = netip.MustParseAddrPort("198.51.100.10:443")
	mapped  = netip.MustParseAddrPort("[::ffff:192.0.2.7]:51000")
	podMap  = netip.MustParseAddrPort("[::ffff:198.51.100.10]:443")
)

func hexBytes(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// encodeCases are the exact bytes of every header the sidecar can write.
var encodeCases = []struct {
	name     string
	v        Version
	src, dst netip.AddrPort
	want     []byte
}{
	{"v1 IPv6", V1, client6, pod6, []byte("PROXY TCP6 2001:db8:2::20 2001:db8:1::10 40123 8080\r\n")},
	{"v1 IPv4", V1, client4, pod4, []byte("PROXY TCP4 192.0.2.7 198.51.100.10 51000 443\r\n")},
	{"v1 IPv4-mapped is IPv4", V1, mapped, podMap, []byte("PROXY TCP4 192.0.2.7 198.51.100.10 51000 443\r\n")},
	{"v1 zone dropped", V1, netip.MustParseAddrPort("[fe80::1%eth0]:1"), netip.MustParseAddrPort("[fe80::2%eth0]:2"),
		[]byte("PROXY TCP6 fe80::1 fe80::2 1 2\r\n")},
	{"v1 mixed families are IPv6", V1, mapped, pod6, []byte("PROXY TCP6 ::ffff:192.0.2.7 2001:db8:1::10 51000 8080\r\n")},
	{"v1 unknown", V1, netip.AddrPort{}, pod6, []byte("PROXY UNKNOWN\r\n")},
	{"v1 longest", V1, netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
		netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
		[]byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n")},
	{"v2 IPv6", V2, client6, pod6, hexBytes(sig, []byte{0x21, 0x21, 0x00, 36},
		[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20},
		[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10},
		[]byte{0x9c, 0xbb, 0x1f, 0x90})},
	{"v2 IPv4", V2, client4, pod4, hexBytes(sig, []byte{0x21, 0x11, 0x00, 12},
		[]byte{192, 0, 2, 7, 198, 51, 100, 10}, []byte{0xc7, 0x38, 0x01, 0xbb})},
	{"v2 IPv4-mapped is IPv4", V2, mapped, podMap, hexBytes(sig, []byte{0x21, 0x11, 0x00, 12},
		[]byte{192, 0, 2, 7, 198, 51, 100, 10}, []byte{0xc7, 0x38, 0x01, 0xbb})},
	{"v2 unknown", V2, client6, netip.AddrPort{}, hexBytes(sig, []byte{0x21, 0x00, 0x00, 0x00})},
}

func TestAppend(t *testing.T) {
	for _, tc := range encodeCases {
		t.Run(tc.name, func(t *testing.T) {
			got := Append([]byte("x"), tc.v, tc.src, tc.dst)
			if !bytes.Equal(got[1:], tc.want) || got[0] != 'x' {
				t.Fatalf("got  %q\nwant %q", got[1:], tc.want)
			}
			if tc.v == V1 && len(got)-1 > MaxV1 {
				t.Errorf("v1 line of %d bytes, over %d", len(got)-1, MaxV1)
			}
		})
	}
	if len(AppendV2(nil, client4, pod4)) != V2TCP4 || len(AppendV2(nil, client6, pod6)) != V2TCP6 {
		t.Error("V2TCP4/V2TCP6 do not match the encoder")
	}
	if got := Append(nil, 3, client6, pod6); len(got) != 0 {
		t.Errorf("unknown version appended %q", got)
	}
}

func TestAppendLocal(t *testing.T) {
	if got := AppendLocal(nil, V1); string(got) != "PROXY UNKNOWN\r\n" {
		t.Errorf("v1: %q", got)
	}
	got := AppendLocal(nil, V2)
	if want := hexBytes(sig, []byte{0x20, 0x00, 0x00, 0x00}); !bytes.Equal(got, want) {
		t.Errorf("v2: %q, want %q", got, want)
	}
	if h, n, err := Parse(got); err != nil || !h.Local || n != len(got) {
		t.Errorf("v2 LOCAL parses as %+v %d %v", h, n, err)
	}
}

func TestParseVersion(t *testing.T) {
	for s, want := range map[string]Version{"v1": V1, "v2": V2} {
		if v, err := ParseVersion(s); err != nil || v != want || v.String() != s {
			t.Errorf("ParseVersion(%q) = %v, %v", s, v, err)
		}
	}
	for _, s := range []string{"", "1", "V1", "v3", "v2 "} {
		if _, err := ParseVersion(s); err == nil {
			t.Errorf("ParseVersion(%q) accepted", s)
		}
	}
}

// The encoded headers parse back to their (normalised) addresses, followed by payload.
func TestParseRoundTrip(t *testing.T) {
	for _, tc := range encodeCases {
		t.Run(tc.name, func(t *testing.T) {
			b := append(bytes.Clone(tc.want), "GET / HTTP/1.1\r\n"...)
			h, n, err := Parse(b)
			if err != nil || n != len(tc.want) || h.Version != tc.v {
				t.Fatalf("Parse = %+v, %d, %v", h, n, err)
			}
			if again := Append(nil, h.Version, h.Src, h.Dst); !bytes.Equal(again, tc.want) {
				t.Errorf("re-encoded %q, want %q", again, tc.want)
			}
			for i := range n { // every strict prefix asks for more
				if _, _, err := Parse(b[:i]); !errors.Is(err, ErrIncomplete) {
					t.Fatalf("prefix of %d bytes: %v, want ErrIncomplete", i, err)
				}
			}
		})
	}
	h, _, _ := Parse(encodeCases[0].want)
	if h.Src != client6 || h.Dst != pod6 {
		t.Errorf("v1 IPv6 parsed as %v -> %v", h.Src, h.Dst)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"http", "GET / HTTP/1.1\r\n", ErrNotProxy},
		{"lower case", "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", ErrNotProxy},
		{"v1 bad family", "PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", ErrMalformed},
		{"v1 IPv6 in TCP4", "PROXY TCP4 ::1 ::1 1 2\r\n", ErrMalformed},
		{"v1 IPv4 in TCP6", "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n", ErrMalformed},
		{"v1 port too big", "PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", ErrMalformed},
		{"v1 port leading zero", "PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n", ErrMalformed},
		{"v1 too few fields", "PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", ErrMalformed},
		{"v1 double space", "PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", ErrMalformed},
		{"v1 LF only", "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", ErrMalformed},
		{"v1 zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", ErrMalformed},
		{"v1 too long", "PROXY TCP6 " + string(bytes.Repeat([]byte("a"), 120)), ErrMalformed},
		{"v2 bad signature", "\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c", ErrNotProxy},
		{"v2 version 1", string(sig) + "\x11\x11\x00\x00", ErrMalformed},
		{"v2 short block", string(sig) + "\x21\x21\x00\x0c" + string(make([]byte, 12)), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, n, err := Parse([]byte(tt.in))
			if !errors.Is(err, tt.want) || n != 0 {
				t.Fatalf("Parse = %+v, %d, %v; want %v", h, n, err, tt.want)
			}
		})
	}
}

func TestParseV2Extras(t *testing.T) {
	local := hexBytes(sig, []byte{0x20, 0x00, 0x00, 0x00})
	if h, n, err := Parse(local); err != nil || !h.Local || n != 16 || h.Src.IsValid() {
		t.Errorf("LOCAL: %+v %d %v", h, n, err)
	}
	tlv := hexBytes(sig, []byte{0x21, 0x11, 0x00, 12 + 4}, []byte{192, 0, 2, 7, 198, 51, 100, 10, 0xc7, 0x38, 0x01, 0xbb},
		[]byte{0x04, 0x00, 0x01, 0xff}) // a NOOP TLV
	if h, n, err := Parse(tlv); err != nil || n != len(tlv) || h.Src != client4 || h.Dst != pod4 {
		t.Errorf("with TLV: %+v %d %v", h, n, err)
	}
}

// FuzzParse: Parse never panics, never claims more bytes than it has, and what it parses
// encodes to a header that parses to the same addresses (encode is idempotent over parse).
func FuzzParse(f *testing.F) {
	for _, tc := range encodeCases {
		f.Add(tc.want)
	}
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nrest"))
	f.Add(hexBytes(sig, []byte{0x20, 0x00, 0x00, 0x00}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with n=%d", err, n)
			}
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("n=%d of %d bytes", n, len(b))
		}
		if h.Local {
			return
		}
		enc := Append(nil, h.Version, h.Src, h.Dst)
		h2, n2, err := Parse(enc)
		if err != nil || n2 != len(enc) {
			t.Fatalf("re-encoded %q does not parse: %v", enc, err)
		}
		if again := Append(nil, h2.Version, h2.Src, h2.Dst); !bytes.Equal(again, enc) {
			t.Fatalf("encode not stable: %q then %q", enc, again)
		}
	})
}

func BenchmarkAppendV2(b *testing.B) {
	buf := make([]byte, 0, V2TCP6)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendV2(buf[:0], client6, pod6)
	}
}

func TestAppendAllocs(t *testing.T) {
	buf := make([]byte, 0, MaxV1)
	for _, v := range []Version{V1, V2} {
		if n := testing.AllocsPerRun(100, func() { buf = Append(buf[:0], v, client6, pod6) }); n != 0 {
			t.Errorf("%v: %v allocations into a buffer with room", v, n)
		}
	}
}
