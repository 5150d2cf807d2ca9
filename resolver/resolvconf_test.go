package resolver

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

var resolvConfCases = []struct {
	name string
	in   string
	want ResolvConf
}{
	{
		name: "kubernetes",
		in: "search default.svc.cluster.local svc.cluster.local cluster.local\n" +
			"nameserver fd00:10:96::a\noptions ndots:5\n",
		want: ResolvConf{
			Servers:  []netip.AddrPort{netip.MustParseAddrPort("[fd00:10:96::a]:53")},
			Search:   []string{"default.svc.cluster.local.", "svc.cluster.local.", "cluster.local."},
			Ndots:    5,
			Timeout:  5 * time.Second,
			Attempts: 2,
		},
	},
	{
		name: "options and comments",
		in: "# comment\n; other comment\nnameserver 192.0.2.53 # trailing\nnameserver 2001:db8::53\n" +
			"nameserver bogus\noptions rotate timeout:3 attempts:4 edns0 use-vc\n",
		want: ResolvConf{
			Servers: []netip.AddrPort{
				netip.MustParseAddrPort("192.0.2.53:53"),
				netip.MustParseAddrPort("[2001:db8::53]:53"),
			},
			Search:   nil,
			Ndots:    1,
			Timeout:  3 * time.Second,
			Attempts: 4,
			Rotate:   true,
			UseTCP:   true,
		},
	},
	{
		name: "clamps",
		in:   "nameserver 127.0.0.1\noptions ndots:40 timeout:0 attempts:99\n",
		want: ResolvConf{
			Servers:  []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")},
			Ndots:    15,
			Timeout:  time.Second,
			Attempts: 5,
		},
	},
	{
		name: "clamps high timeout and negative ndots",
		in:   "nameserver 127.0.0.1\noptions ndots:-3 timeout:100 attempts:0 ndots:x\n",
		want: ResolvConf{
			Servers:  []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")},
			Ndots:    0,
			Timeout:  30 * time.Second,
			Attempts: 1,
		},
	},
	{
		name: "last search or domain wins, port extension, link-local zone, mapped v4",
		in: "search a.example b.example\ndomain Corp.Example.\nnameserver [::1]:5353\n" +
			"nameserver fe80::1%eth0\nnameserver ::ffff:192.0.2.1\n",
		want: ResolvConf{
			Servers: []netip.AddrPort{
				netip.MustParseAddrPort("[::1]:5353"),
				netip.MustParseAddrPort("[fe80::1%eth0]:53"),
				netip.MustParseAddrPort("192.0.2.1:53"),
			},
			Search:   []string{"corp.example."},
			Ndots:    1,
			Timeout:  5 * time.Second,
			Attempts: 2,
		},
	},
	{
		name: "no nameserver means localhost",
		in:   "search example.com\n",
		want: ResolvConf{
			Servers:  localServers(),
			Search:   []string{"example.com."},
			Ndots:    1,
			Timeout:  5 * time.Second,
			Attempts: 2,
		},
	},
}

func TestParseResolvConf(t *testing.T) {
	for _, tc := range resolvConfCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseResolvConf(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestLoadResolvConfMissing(t *testing.T) {
	rc, err := loadResolvConf(t.TempDir() + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	if !rc.Missing || !reflect.DeepEqual(rc.Servers, localServers()) || rc.Ndots != 1 {
		t.Errorf("missing file: got %+v", rc)
	}
}

var hostsCases = []struct {
	name string
	in   string
	want Hosts
}{
	{
		name: "both families and aliases",
		in: "127.0.0.1 localhost\n::1 localhost ip6-localhost # comment\n" +
			"192.0.2.7\tMyHost myhost.example.\n2001:db8::7 myhost\n",
		want: Hosts{
			"localhost.":      {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")},
			"ip6-localhost.":  {netip.MustParseAddr("::1")},
			"myhost.":         {netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")},
			"myhost.example.": {netip.MustParseAddr("192.0.2.7")},
		},
	},
	{
		name: "junk skipped, duplicates merged",
		in:   "not-an-ip host\n# only comment\n192.0.2.1\n192.0.2.1 dup dup\n::ffff:192.0.2.2 mapped\n",
		want: Hosts{
			"dup.":    {netip.MustParseAddr("192.0.2.1")},
			"mapped.": {netip.MustParseAddr("192.0.2.2")},
		},
	},
}

func TestParseHosts(t *testing.T) {
	for _, tc := range hostsCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHosts(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func FuzzParseResolvConf(f *testing.F) {
	for _, tc := range resolvConfCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rc, err := ParseResolvConf(strings.NewReader(in))
		if err != nil {
			return // only over-long lines fail
		}
		if len(rc.Servers) == 0 || rc.Ndots < 0 || rc.Ndots > maxNdots ||
			rc.Timeout < time.Second || rc.Timeout > maxTimeout || rc.Attempts < 1 || rc.Attempts > maxAttempts {
			t.Fatalf("out of range: %+v", rc)
		}
		for _, s := range rc.Servers {
			if !s.IsValid() || s.Port() == 0 {
				t.Fatalf("bad server %v", s)
			}
		}
		for _, s := range rc.Search {
			if !strings.HasSuffix(s, ".") || s == "." || len(s) > 254 {
				t.Fatalf("bad search entry %q", s)
			}
		}
	})
}

func FuzzParseHosts(f *testing.F) {
	for _, tc := range hostsCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h, err := ParseHosts(strings.NewReader(in))
		if err != nil {
			return
		}
		for name, addrs := range h {
			if !strings.HasSuffix(name, ".") || name != strings.ToLower(name) || len(addrs) == 0 {
				t.Fatalf("bad entry %q: %v", name, addrs)
			}
			for _, a := range addrs {
				if !a.IsValid() || a.Is4In6() {
					t.Fatalf("bad address %v for %q", a, name)
				}
			}
		}
	})
}
