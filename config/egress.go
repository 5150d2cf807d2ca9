package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nat464/nat464-sidecar/egress"
)

// Defaults of the transparent-egress flags.
const (
	DefaultEgressRange    = "127.100.0.0/16"
	DefaultEgressPorts    = "80,443"
	DefaultEgressMaxNames = 1024
	// MaxEgressPorts bounds --egress-ports and --egress-udp-ports each: every port costs a
	// listener per name.
	MaxEgressPorts = 64
)

type egressFlags struct {
	dnsListen, dnsUpstream, egressRange, egressPorts, egressUDPPorts string
}

// egress checks the transparent-egress flags and counts the hosts-file names in the range.
func (c *Config) egress(f egressFlags) error {
	if f.dnsListen != "off" && f.dnsListen != "" {
		ap, err := netip.ParseAddrPort(f.dnsListen)
		if err != nil || ap.Port() == 0 {
			return flagErr("dns-listen", f.dnsListen, errors.New("want IP:PORT (for example 127.0.0.1:53) or off"))
		}
		c.DNSListen = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if f.dnsUpstream != "" {
		for _, item := range strings.Split(f.dnsUpstream, ",") {
			ap, err := parseServer(strings.TrimSpace(item))
			if err != nil {
				return flagErr("dns-upstream", f.dnsUpstream, err)
			}
			if c.DNSListen.IsValid() && serves(c.DNSListen, ap) {
				return flagErr("dns-upstream", f.dnsUpstream, fmt.Errorf("%s is the sidecar's own DNS server (--dns-listen)", ap))
			}
			c.DNSUpstream = append(c.DNSUpstream, ap)
		}
	}
	p, err := netip.ParsePrefix(f.egressRange)
	if err == nil {
		err = egress.CheckRange(p)
	}
	if err != nil {
		return flagErr("egress-range", f.egressRange, err)
	}
	c.EgressRange = p.Masked()
	if c.EgressPorts, err = ParsePorts(f.egressPorts); err != nil {
		return flagErr("egress-ports", f.egressPorts, err)
	}
	if f.egressUDPPorts != "" && f.egressUDPPorts != "none" {
		if c.EgressUDPPorts, err = ParsePorts(f.egressUDPPorts); err != nil {
			return flagErr("egress-udp-ports", f.egressUDPPorts, err)
		}
	}
	if c.EgressMaxNames < 1 {
		return flagErr("egress-max-names", strconv.Itoa(c.EgressMaxNames), errors.New("want at least 1"))
	}
	if c.HostsFile != "" && c.HostsFile != "-" {
		static, err := egress.StaticNames(c.HostsFile, c.EgressRange)
		if err != nil {
			return flagErr("hosts-file", c.HostsFile, err)
		}
		c.EgressStatic = static
	}
	return nil
}

// parseServer reads IP or IP:PORT (port 53 by default); an IPv6 address with a port is bracketed.
func parseServer(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 53), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("%q is not IP or IP:PORT", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// serves reports whether a DNS server listening on listen answers queries sent to server: the
// same port, and the same address or a wildcard listen with a loopback server.
func serves(listen, server netip.AddrPort) bool {
	if listen.Port() != server.Port() {
		return false
	}
	if listen.Addr() == server.Addr() {
		return true
	}
	return listen.Addr().IsUnspecified() && server.Addr().IsLoopback()
}

// Upstreams are the resolvers the sidecar asks when it is the pod's DNS server: --dns-upstream,
// else the nameservers of resolv.conf (as given) less every address the sidecar serves itself.
// None left is an error that says what to set.
func (c *Config) Upstreams(resolvConf []netip.AddrPort) ([]netip.AddrPort, error) {
	if len(c.DNSUpstream) > 0 {
		return c.DNSUpstream, nil
	}
	var out []netip.AddrPort
	for _, s := range resolvConf {
		s = netip.AddrPortFrom(s.Addr().Unmap(), s.Port())
		if !serves(c.DNSListen, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("config: --dns-listen %s leaves no upstream resolver: %s names only the sidecar itself; set --dns-upstream (%s) to the cluster DNS Service address (kubectl -n kube-system get svc kube-dns)",
			c.DNSListen, c.ResolvConf, EnvName("dns-upstream"))
	}
	return out, nil
}

// ParsePorts reads a comma-separated list of ports and FIRST-LAST ranges, in order, without
// duplicates, at most MaxEgressPorts.
func ParsePorts(s string) ([]uint16, error) {
	var out []uint16
	seen := map[uint16]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		lo, hi, isRange := strings.Cut(item, "-")
		first, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("%q is not a port (1-65535) or FIRST-LAST", item)
		}
		last := first
		if isRange {
			if last, err = parsePort(hi); err != nil || last < first {
				return nil, fmt.Errorf("%q is not a port range FIRST-LAST", item)
			}
		}
		for p := int(first); p <= int(last); p++ {
			if seen[uint16(p)] {
				return nil, fmt.Errorf("port %d given twice", p)
			}
			if len(out) == MaxEgressPorts {
				return nil, fmt.Errorf("more than %d ports (each costs a listener per name)", MaxEgressPorts)
			}
			seen[uint16(p)] = true
			out = append(out, uint16(p))
		}
	}
	return out, nil
}
