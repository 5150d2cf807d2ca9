package nat64

import (
	"errors"
	"net/netip"
	"testing"
)

func TestPolicyNeverSynthesize(t *testing.T) {
	nsp := netip.MustParsePrefix("2001:db8:64::/96")
	tests := []struct {
		v4     string
		denied bool
	}{
		{"0.0.0.0", true}, {"0.255.255.255", true}, {"1.0.0.0", false},
		{"126.255.255.255", false}, {"127.0.0.0", true}, {"127.255.255.255", true}, {"128.0.0.0", false},
		{"169.253.255.255", false}, {"169.254.0.0", true}, {"169.254.255.255", true}, {"169.255.0.0", false},
		{"223.255.255.255", false}, {"224.0.0.0", true}, {"239.255.255.255", true},
		{"240.0.0.0", true}, {"255.255.255.254", true}, {"255.255.255.255", true},
	}
	for _, tc := range tests {
		for _, pol := range []Policy{{}, {Strict: true}} {
			for _, prefix := range []netip.Prefix{WKP, nsp} {
				err := pol.Check(prefix, netip.MustParseAddr(tc.v4))
				if tc.denied != errors.Is(err, ErrPolicy) || (!tc.denied && err != nil) {
					t.Errorf("%+v.Check(%s, %s) = %v, denied want %v", pol, prefix, tc.v4, err, tc.denied)
				}
			}
		}
	}
}

func TestPolicyStrict(t *testing.T) {
	nsp := netip.MustParsePrefix("64:ff9b:1::/96") // RFC 8215 local-use: an NSP
	tests := []struct {
		v4     string
		global bool
	}{
		{"10.0.0.1", false}, {"9.255.255.255", true}, {"11.0.0.0", true},
		{"100.64.0.0", false}, {"100.127.255.255", false}, {"100.63.255.255", true}, {"100.128.0.0", true},
		{"172.16.0.0", false}, {"172.31.255.255", false}, {"172.32.0.0", true},
		{"192.168.1.1", false}, {"192.0.0.170", false}, {"192.0.0.9", true}, {"192.0.0.10", true},
		{"192.0.2.1", false}, {"198.51.100.7", false}, {"203.0.113.255", false},
		{"198.18.0.0", false}, {"198.19.255.255", false}, {"198.20.0.0", true},
		{"8.8.8.8", true}, {"::ffff:10.1.1.1", false},
	}
	for _, tc := range tests {
		v4 := netip.MustParseAddr(tc.v4)
		if g := IsGlobal(v4); g != tc.global {
			t.Errorf("IsGlobal(%s) = %v", v4, g)
		}
		if err := (Policy{}).Check(WKP, v4); err != nil {
			t.Errorf("default policy refused %s with the WKP: %v", v4, err)
		}
		if err := (Policy{Strict: true}).Check(nsp, v4); err != nil {
			t.Errorf("strict policy refused %s with an NSP: %v", v4, err)
		}
		err := (Policy{Strict: true}).Check(WKP, v4)
		if tc.global != (err == nil) || (err != nil && !errors.Is(err, ErrPolicy)) {
			t.Errorf("strict Check(WKP, %s) = %v", v4, err)
		}
	}
	if err := (Policy{}).Check(WKP, netip.MustParseAddr("2001:db8::1")); !errors.Is(err, ErrPolicy) {
		t.Errorf("IPv6 input: %v", err)
	}
}
