package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/nat464/nat464-sidecar/egress"
	"github.com/nat464/nat464-sidecar/proxyproto"
)

// inboundOptions parses the per-mapping options (--inbound-proxy-protocol, --inbound-source)
// onto c.Inbound; it runs after finish, which builds the mappings, and after egress, whose
// range an --inbound-source range must not overlap.
func (c *Config) inboundOptions(proxy, source []string) error {
	seen := map[string]map[netip.AddrPort]bool{}
	find := func(flagName, s string) (*Mapping, string, error) {
		l, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, "", flagErr(flagName, s, errors.New("want LISTEN=VALUE, LISTEN as in --inbound"))
		}
		listen, err := parseEndpoint(l, netip.IPv6Unspecified())
		if err != nil {
			return nil, "", flagErr(flagName, s, err)
		}
		if seen[flagName] == nil {
			seen[flagName] = map[netip.AddrPort]bool{}
		}
		if seen[flagName][listen] {
			return nil, "", flagErr(flagName, s, fmt.Errorf("listen address %s given twice", listen))
		}
		seen[flagName][listen] = true
		for i := range c.Inbound {
			if c.Inbound[i].Listen == listen {
				return &c.Inbound[i], strings.TrimSpace(v), nil
			}
		}
		return nil, "", flagErr(flagName, s, fmt.Errorf("no --inbound mapping listens on %s", listen))
	}
	for _, s := range proxy {
		m, v, err := find("inbound-proxy-protocol", s)
		if err != nil {
			return err
		}
		if m.ProxyProtocol, err = proxyproto.ParseVersion(v); err != nil {
			return flagErr("inbound-proxy-protocol", s, errors.New("want v1 or v2 after ="))
		}
	}
	for _, s := range source {
		m, v, err := find("inbound-source", s)
		if err != nil {
			return err
		}
		if m.Source, err = c.sourceRange(m, v); err != nil {
			return flagErr("inbound-source", s, err)
		}
	}
	return nil
}

// sourceRange checks one --inbound-source range for mapping m: a loopback range without
// 127.0.0.1 (the egress range's rule), a loopback target (a 127.x source cannot reach anything
// else), the same range or none shared with another mapping (two tables would give one address
// to two clients), and apart from the egress range when transparent egress is on.
func (c *Config) sourceRange(m *Mapping, v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err == nil {
		err = egress.CheckRange(p)
	}
	if err != nil {
		return netip.Prefix{}, err
	}
	p = p.Masked()
	if t := m.Target.Addr().Unmap(); !t.Is4() || !t.IsLoopback() {
		return netip.Prefix{}, fmt.Errorf("the mapping's target %s is not in 127.0.0.0/8: a loopback source reaches only loopback", m.Target)
	}
	for _, o := range c.Inbound {
		if o.Source.IsValid() && o.Source != p && o.Source.Overlaps(p) {
			return netip.Prefix{}, fmt.Errorf("%s overlaps %s of mapping %s: give mappings the same range or disjoint ones", p, o.Source, o.Listen)
		}
	}
	if c.EgressOn() && c.EgressRange.Overlaps(p) {
		return netip.Prefix{}, fmt.Errorf("%s overlaps --egress-range %s", p, c.EgressRange)
	}
	return p, nil
}
