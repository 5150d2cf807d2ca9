package nat64

import (
	"errors"
	"net/netip"
	"testing"
)

// rfcExamples is the RFC 6052 §2.4 table for 192.0.2.33, plus the WKP line.
var rfcExamples = []struct {
	prefix, v6 string
}{
	{"2001:db8::/32", "2001:db8:c000:221::"},
	{"2001:db8:100::/40", "2001:db8:1c0:2:21::"},
	{"2001:db8:122::/48", "2001:db8:122:c000:2:2100::"},
	{"2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"},
	{"2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100::"},
	{"2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"},
	{"64:ff9b::/96", "64:ff9b::192.0.2.33"},
}

func TestComposeExtractRFCExamples(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.33")
	for _, tc := range rfcExamples {
		t.Run(tc.prefix, func(t *testing.T) {
			p, want := netip.MustParsePrefix(tc.prefix), netip.MustParseAddr(tc.v6)
			got, err := Compose(p, v4)
			if err != nil || got != want {
				t.Fatalf("Compose(%s, %s) = %s, %v; want %s", p, v4, got, err, want)
			}
			back, ok := Extract(p, want)
			if !ok || back != v4 {
				t.Fatalf("Extract(%s, %s) = %s, %v; want %s", p, want, back, ok, v4)
			}
		})
	}
}

func TestUOctet(t *testing.T) {
	v4 := netip.MustParseAddr("255.255.255.255")
	for _, bits := range []int{32, 40, 48, 56, 64, 96} {
		p := netip.PrefixFrom(netip.MustParseAddr("2001:db8:aaaa:bbbb::"), bits).Masked()
		a, err := Compose(p, v4)
		if err != nil {
			t.Fatalf("/%d: %v", bits, err)
		}
		if b := a.As16(); b[8] != 0 {
			t.Errorf("/%d: u octet of %s is %#x, want 0", bits, a, b[8])
		}
		// A non-zero u octet and suffix in an incoming address are ignored (RFC 6052 §2.2).
		b := a.As16()
		if bits < 96 {
			b[8] = 0xff
			b[15] |= 0x01
		}
		if got, ok := Extract(p, netip.AddrFrom16(b)); !ok || got != v4 {
			t.Errorf("/%d: Extract with dirty u octet/suffix = %s %v", bits, got, ok)
		}
	}
}

func TestInvalidPrefixes(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	for _, s := range []string{
		"2001:db8::/33", "2001:db8::/0", "2001:db8::/128", "2001:db8::/72", "2001:db8::/88",
		"2001:db8:0:0:ff00::/96", // u octet inside a /96
		"192.0.2.0/24", "::ffff:0:0/96",
	} {
		p := netip.MustParsePrefix(s)
		err := ValidPrefix(p)
		if !errors.Is(err, ErrBadPrefix) {
			t.Errorf("ValidPrefix(%s) = %v, want ErrBadPrefix", s, err)
		}
		var pe *PrefixError
		if !errors.As(err, &pe) || pe.Prefix != p || pe.Reason == "" {
			t.Errorf("ValidPrefix(%s) = %#v, want a *PrefixError naming the prefix and the rule", s, err)
		}
		if _, err := Compose(p, v4); !errors.Is(err, ErrBadPrefix) {
			t.Errorf("Compose(%s) = %v, want ErrBadPrefix", s, err)
		}
		if _, ok := Extract(p, netip.MustParseAddr("2001:db8::1")); ok {
			t.Errorf("Extract(%s) ok, want false", s)
		}
	}
	if err := ValidPrefix(netip.Prefix{}); !errors.Is(err, ErrBadPrefix) {
		t.Errorf("zero prefix: %v", err)
	}
}

func TestComposeNotIPv4(t *testing.T) {
	if _, err := Compose(WKP, netip.MustParseAddr("2001:db8::1")); !errors.Is(err, ErrNotIPv4) {
		t.Fatalf("err = %v, want ErrNotIPv4", err)
	}
	// An IPv4-mapped address is accepted as IPv4.
	if a, err := Compose(WKP, netip.MustParseAddr("::ffff:192.0.2.1")); err != nil || a != netip.MustParseAddr("64:ff9b::c000:201") {
		t.Fatalf("mapped: %s %v", a, err)
	}
}

func TestExtractOutsidePrefix(t *testing.T) {
	for _, s := range []string{"2001:db9::c000:221", "192.0.2.33", "::ffff:192.0.2.33"} {
		if _, ok := Extract(netip.MustParsePrefix("2001:db8::/32"), netip.MustParseAddr(s)); ok {
			t.Errorf("Extract(%s) ok, want false", s)
		}
	}
}

func FuzzComposeExtract(f *testing.F) {
	for _, tc := range rfcExamples {
		p := netip.MustParsePrefix(tc.prefix)
		b := p.Addr().As16()
		f.Add(b[:], uint8(p.Bits()), []byte{192, 0, 2, 33})
	}
	f.Fuzz(func(t *testing.T, pb []byte, bits uint8, v4b []byte) {
		if len(pb) != 16 || len(v4b) != 4 {
			return
		}
		p := netip.PrefixFrom(netip.AddrFrom16([16]byte(pb)), int(bits))
		v4 := netip.AddrFrom4([4]byte(v4b))
		a, err := Compose(p, v4)
		if ValidPrefix(p) != nil {
			if err == nil {
				t.Fatalf("Compose accepted invalid prefix %s", p)
			}
			return
		}
		if err != nil {
			t.Fatalf("Compose(%s, %s): %v", p, v4, err)
		}
		if !p.Contains(a) || a.As16()[8] != 0 {
			t.Fatalf("Compose(%s, %s) = %s outside prefix or u octet set", p, v4, a)
		}
		back, ok := Extract(p, a)
		if !ok || back != v4 {
			t.Fatalf("round trip %s -> %s -> %s %v", v4, a, back, ok)
		}
	})
}
