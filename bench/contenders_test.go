package main

import (
	"slices"
	"testing"
)

func TestNamesOnly(t *testing.T) {
	tests := []struct {
		name, conf, addr string
		want             bool
	}{
		{"the bench server", "nameserver 127.0.0.1\n", "127.0.0.1:53", true},
		{"with options", "# netns\nsearch x.test\nnameserver 127.0.0.1\noptions ndots:1\n", "127.0.0.1:53", true},
		{"another server too", "nameserver 127.0.0.1\nnameserver 10.0.0.53\n", "127.0.0.1:53", false},
		{"another server", "nameserver 10.255.255.53\n", "127.0.0.1:53", false},
		{"not port 53", "nameserver 127.0.0.1\n", "127.0.0.1:5353", false},
		{"no nameserver", "search x.test\n", "127.0.0.1:53", false},
		{"bad address", "nameserver 127.0.0.1\n", "localhost:53", false},
	}
	for _, tt := range tests {
		if got := namesOnly(tt.conf, tt.addr); got != tt.want {
			t.Errorf("%s: namesOnly = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestTargetFor(t *testing.T) {
	app := "127.0.0.1:4242"
	tests := []struct {
		fam  string
		want Target
	}{
		{FamilyInbound, Target{Addr: "[::1]:1080"}},
		{FamilySOCKS, Target{Addr: "[::1]:1080", Dest: app}},
		{FamilySOCKSHosts, Target{Addr: "[::1]:1080", Dest: hostsName + ":4242"}},
		{FamilySOCKSDNS, Target{Addr: "[::1]:1080", Dest: benchName + ":4242"}},
		{FamilyHTTP, Target{Addr: "[::1]:1080", Dest: app, HTTP: true}},
		{FamilyHTTPHosts, Target{Addr: "[::1]:1080", Dest: hostsName + ":4242", HTTP: true}},
		{FamilyEgress, Target{Addr: egressAddr + ":4242"}},
	}
	for _, tt := range tests {
		if got := targetFor(tt.fam, "::1", 1080, app); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.fam, got, tt.want)
		}
	}
}

// TestContenderNames checks that every contender has its own name (results
// are looked up by it) and that each new family has the sidecar and peers.
func TestContenderNames(t *testing.T) {
	seen := map[string]bool{}
	perFam := map[string][]string{}
	for _, c := range contenders("/sidecar", "/bench", []string{"splice"}) {
		if seen[c.Name] {
			t.Errorf("duplicate contender %s", c.Name)
		}
		seen[c.Name] = true
		perFam[c.Family] = append(perFam[c.Family], c.Name)
	}
	want := map[string][]string{
		FamilySOCKSHosts: {"sidecar-splice-socks5-hosts", "sidecar-relay-socks5-hosts", "danted-hosts", "microsocks-hosts", "go-socks5-min-hosts"},
		FamilySOCKSDNS:   {"sidecar-splice-socks5-dns", "sidecar-relay-socks5-dns", "danted-dns", "microsocks-dns", "go-socks5-min-dns"},
		FamilyHTTP:       {"sidecar-splice-http", "sidecar-relay-http", "tinyproxy"},
		FamilyHTTPHosts:  {"sidecar-splice-http-hosts", "sidecar-relay-http-hosts", "tinyproxy-hosts"},
		FamilyEgress:     {"sidecar-splice-egress"},
	}
	for fam, names := range want {
		if got := perFam[fam]; !slices.Equal(got, names) {
			t.Errorf("%s: %v, want %v", fam, got, names)
		}
	}
	for _, n := range []string{"sidecar-splice-socks5", "sidecar-goroutine-socks5", "sidecar-relay-socks5", "go-socks5-min"} {
		if !seen[n] {
			t.Errorf("no contender %s", n)
		}
	}
}
