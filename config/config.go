// Package config holds the sidecar's configuration: the Config struct, parsing of flags and their
// NAT464_* environment twins, and validation with errors that name the flag at fault. It does no
// I/O beyond reading files it is pointed at.
package config

import (
	"net/netip"
	"time"

	"github.com/nat464/nat464-sidecar/proxyproto"
)

// Mapping is one inbound forwarding rule: accept on Listen (IPv6, V6ONLY), forward to Target.
type Mapping struct {
	Listen netip.AddrPort
	Target netip.AddrPort
	// ProxyProtocol, if not zero, is the PROXY protocol header written to Target before any
	// relayed byte (--inbound-proxy-protocol; TCP mappings only).
	ProxyProtocol proxyproto.Version
	// Source, if valid, is the loopback range Target is connected from, one stable address per
	// client address (--inbound-source; TCP mappings only).
	Source netip.Prefix
}

func (m Mapping) String() string { return m.Listen.String() + "=" + m.Target.String() }

// Engine selects the front end and relay.
type Engine string

const (
	EngineAuto      Engine = "auto"
	EngineSplice    Engine = "splice"
	EngineGoroutine Engine = "goroutine"
)

// Where the proxy port's handshakes run (--proxy-handshakes).
const (
	ProxyHandshakesGnet  = "gnet"
	ProxyHandshakesRelay = "relay"
)

// Config is everything a user can set. Zero values are not defaults: Parse fills every field.
type Config struct {
	Inbound     []Mapping
	AdminListen string
	Engine      Engine
	// MaxConns caps concurrent flows (inbound and outbound together); derived from RLIMIT_NOFILE
	// when not given (MaxConnsDerived then says so).
	MaxConns        int
	MaxConnsDerived bool
	IdleTimeout     time.Duration
	DrainTimeout    time.Duration
	LogLevel        string
	LogFormat       string
	ShowVersion     bool

	// Outbound proxy.
	// ProxyListen are the proxy's addresses; empty when disabled ("off"). ProxyListenDefault
	// says they are DefaultProxyListen, not given: an address whose family the host lacks
	// (no ::1 where IPv6 is disabled) is then skipped with a warning instead of failing start.
	ProxyListen        []netip.AddrPort
	ProxyListenDefault bool
	HandshakeTimeout   time.Duration
	ProxyAuthFile      string
	// EgressPolicy is the egress policy file (package policy); "" for none, which leaves the
	// built-in rules (the sidecar's own sockets, link-local addresses) and allows the rest.
	EgressPolicy string
	// ProxyHandshakes is where the proxy port's accepts and handshakes run: ProxyHandshakesGnet
	// (the default) or ProxyHandshakesRelay, the splice relay loops (experimental).
	ProxyHandshakes string

	// Resolver, NAT64 and Happy Eyeballs.
	ResolvConf         string
	HostsFile          string
	NAT64Mode          string // nat64.ModeAuto, ModeNone or ModeStatic
	NAT64Prefixes      []netip.Prefix
	NAT64Strict        bool
	HEFirstFamilyCount int
	HEResolutionDelay  time.Duration
	HEAttemptDelay     time.Duration
	HEMaxConcurrent    int
	DialTimeout        time.Duration

	// Transparent egress (docs/operations.md, "Transparent egress").
	// DNSListen is where the pod's DNS server listens (UDP and TCP); zero when off.
	DNSListen netip.AddrPort
	// DNSUpstream are the real resolvers given with --dns-upstream; empty means the
	// nameservers of --resolv-conf less the sidecar's own (see Upstreams).
	DNSUpstream []netip.AddrPort
	// EgressRange holds the egress addresses; EgressPorts are the TCP ports served at each.
	EgressRange netip.Prefix
	EgressPorts []uint16
	// EgressUDPPorts are the UDP ports relayed at each egress address (none by default).
	EgressUDPPorts []uint16
	// EgressState, if set, keeps the name/address table across restarts.
	EgressState string
	// EgressMaxNames bounds the names the DNS server gives an address (each costs a listener
	// per egress port, counted in the derived MaxConns).
	EgressMaxNames int
	// EgressStatic are the hosts file's names with an address in EgressRange (read once, at
	// parse time; their listeners are counted in the derived MaxConns too).
	EgressStatic map[netip.Addr]string

	// Inbound UDP (docs/operations.md, "UDP").
	// InboundUDP are the --inbound-udp mappings; empty when none.
	InboundUDP []Mapping
	// UDPIdleTimeout ends a UDP session with no datagram either way for this long.
	UDPIdleTimeout time.Duration
	// UDPMaxSessions bounds the UDP sessions of all mappings together; derived (see
	// UDPMaxSessionsDerived) it is MaxConns, whose slots the sessions share.
	UDPMaxSessions        int
	UDPMaxSessionsDerived bool

	// Admin extras.
	Pprof bool
}

// EgressOn reports whether transparent egress serves anything: the DNS server, or hosts-file
// names in the egress range.
func (c *Config) EgressOn() bool { return c.DNSListen.IsValid() || len(c.EgressStatic) > 0 }

// EgressListenerFDs is the most egress listeners the configuration can open.
func (c *Config) EgressListenerFDs() int {
	names := len(c.EgressStatic)
	if c.DNSListen.IsValid() {
		names += c.EgressMaxNames
	}
	return names * (len(c.EgressPorts) + len(c.EgressUDPPorts))
}
