package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/splice"
)

// ErrHelp is returned by Parse when -h or --help was asked for; usage has been written.
var ErrHelp = flag.ErrHelp

// Defaults that are fixed (MaxConns depends on the process's file limit, see DefaultMaxConns).
const (
	DefaultInbound     = "8080=127.0.0.1:80"
	DefaultAdminListen = "[::]:9464"
	// DefaultProxyListen is the proxy on both loopbacks: in an IPv6-only pod glibc's getaddrinfo
	// with AI_ADDRCONFIG refuses every IPv4 result, 127.0.0.1 included, and maps localhost to
	// ::1 only, so a client that resolves its proxy host that way can reach only [::1].
	DefaultProxyListen      = "127.0.0.1:1080,[::1]:1080"
	DefaultDrainTimeout     = 25 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 10 * time.Second
)

// EnvName returns the environment twin of a flag: "he-attempt-delay" -> "NAT464_HE_ATTEMPT_DELAY".
func EnvName(flagName string) string {
	return "NAT464_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// listFlags are the repeatable flags whose environment value is a comma-separated list, each
// item as if the flag were given once more.
var listFlags = map[string]bool{"inbound": true, "inbound-udp": true, "inbound-proxy-protocol": true, "inbound-source": true}

// Parse reads args (without the program name) and, for every flag not given in args, its
// environment twin through getenv. usage receives the help text on -h, and nothing on an error:
// the error is returned, for the caller to print once. Every error names the flag.
func Parse(args []string, getenv func(string) string, usage io.Writer) (*Config, error) {
	c := &Config{}
	var inbound, inboundProxy, inboundSource []string
	var uf udpFlags
	var maxConns, nat64Prefix string
	var proxyListen []string
	fs := flag.NewFlagSet("nat464-sidecar", flag.ContinueOnError)
	// On a bad flag the flag package prints the error and the whole usage before returning the
	// error; keep it quiet and print the usage only for -h.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.Func("inbound", "LISTEN=TARGET inbound mapping, repeatable (default "+DefaultInbound+")", func(s string) error {
		inbound = append(inbound, s)
		return nil
	})
	fs.Func("inbound-proxy-protocol", "LISTEN=v1|v2 send the app a PROXY protocol header first on the --inbound mapping listening on LISTEN, repeatable (default none)", func(s string) error {
		inboundProxy = append(inboundProxy, s)
		return nil
	})
	fs.Func("inbound-source", "LISTEN=CIDR connect to the app of the --inbound mapping on LISTEN from a loopback address in CIDR (inside 127.0.0.0/8, without 127.0.0.1) that is stable per client, repeatable (default none)", func(s string) error {
		inboundSource = append(inboundSource, s)
		return nil
	})
	fs.StringVar(&c.AdminListen, "admin-listen", DefaultAdminListen, "address of the probe/metrics HTTP server")
	fs.StringVar((*string)(&c.Engine), "engine", string(EngineAuto), "auto|splice|goroutine")
	fs.StringVar(&maxConns, "max-conns", "", "cap on concurrent flows (default derived from RLIMIT_NOFILE)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 0, "close a flow idle this long (0 = never)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", DefaultDrainTimeout, "how long in-flight flows may finish after SIGTERM")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug|info|warn|error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json|text")
	fs.BoolVar(&c.ShowVersion, "version", false, "print the version and exit")
	fs.Var((*lastList)(&proxyListen), "proxy-listen", "IP:PORT[,IP:PORT] of the outbound proxy (SOCKS5/4a, HTTP CONNECT, plain-HTTP forwarding), or off (default "+DefaultProxyListen+")")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", DefaultHandshakeTimeout, "deadline for a proxy handshake")
	fs.StringVar(&c.ProxyAuthFile, "proxy-auth-file", "", "file of user:password lines; enables proxy authentication")
	fs.StringVar(&c.EgressPolicy, "egress-policy", "", "file of egress rules (allow|deny NAME|*.NAME|CIDR [PORTS], default allow|deny) for every outbound path; re-read on SIGHUP and when it changes")
	fs.StringVar(&c.ProxyHandshakes, "proxy-handshakes", ProxyHandshakesGnet,
		"gnet|relay: the event loops that run the proxy port's accepts and handshakes (relay: the splice relay loops, experimental)")
	fs.StringVar(&c.ResolvConf, "resolv-conf", "/etc/resolv.conf", "resolver configuration")
	fs.StringVar(&c.HostsFile, "hosts-file", "/etc/hosts", "hosts file consulted before DNS")
	fs.StringVar(&nat64Prefix, "nat64-prefix", nat64.ModeAuto, "auto|none|PREFIX[,PREFIX] (RFC 6052 / RFC 7050)")
	fs.BoolVar(&c.NAT64Strict, "nat64-strict", false, "refuse the Well-Known Prefix for non-global IPv4 (RFC 6052 §3.1)")
	fs.IntVar(&c.HEFirstFamilyCount, "he-first-family-count", 1, "RFC 8305 First Address Family Count")
	fs.DurationVar(&c.HEResolutionDelay, "he-resolution-delay", 50*time.Millisecond, "RFC 8305 Resolution Delay")
	fs.DurationVar(&c.HEAttemptDelay, "he-attempt-delay", 250*time.Millisecond, "RFC 8305 Connection Attempt Delay, clamped to [10ms, 2s]")
	fs.IntVar(&c.HEMaxConcurrent, "he-max-concurrent", 4, "most connection attempts in flight at once")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", DefaultDialTimeout, "bound on a whole Happy Eyeballs race")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve /debug/pprof on the admin port")
	var eg egressFlags
	fs.StringVar(&eg.dnsListen, "dns-listen", "off", "serve the pod's DNS on IP:PORT over UDP and TCP (transparent egress), or off")
	fs.StringVar(&eg.dnsUpstream, "dns-upstream", "", "IP[:PORT][,IP[:PORT]] the real resolvers, the cluster DNS Service (default: --resolv-conf's nameservers less the sidecar's own)")
	fs.StringVar(&eg.egressRange, "egress-range", DefaultEgressRange, "loopback range of egress addresses: inside 127.0.0.0/8, without 127.0.0.1")
	fs.StringVar(&eg.egressPorts, "egress-ports", DefaultEgressPorts, "TCP ports (PORT or FIRST-LAST, comma-separated) served at each egress address")
	fs.StringVar(&eg.egressUDPPorts, "egress-udp-ports", "", "UDP ports (PORT or FIRST-LAST, comma-separated) relayed at each egress address to the name behind it (default none)")
	fs.StringVar(&c.EgressState, "egress-state", "", "file that keeps the egress name/address table across restarts (default: memory only)")
	fs.IntVar(&c.EgressMaxNames, "egress-max-names", DefaultEgressMaxNames, "most names the DNS server gives an egress address")

	uf.define(fs, c)

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, usage)
			return nil, ErrHelp
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("config: unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	if err := applyEnv(fs, getenv, map[string]*[]string{"inbound": &inbound, "inbound-udp": &uf.inbound,
		"inbound-proxy-protocol": &inboundProxy, "inbound-source": &inboundSource}); err != nil {
		return nil, err
	}
	if err := c.egress(eg); err != nil {
		return nil, err
	}
	if err := c.proxyListen(proxyListen); err != nil {
		return nil, err
	}
	if err := c.finish(inbound, maxConns, nat64Prefix); err != nil {
		return nil, err
	}
	if err := c.inboundOptions(inboundProxy, inboundSource); err != nil {
		return nil, err
	}
	if err := c.udp(uf); err != nil {
		return nil, err
	}
	return c, nil
}

// printUsage writes what the flag package's default usage would: a header, then every flag.
func printUsage(fs *flag.FlagSet, w io.Writer) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, "Usage of %s:\n", fs.Name())
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// applyEnv sets every flag that args did not set from its NAT464_* twin. The items of a list
// flag's twin are appended to lists[name].
func applyEnv(fs *flag.FlagSet, getenv func(string) string, lists map[string]*[]string) error {
	if getenv == nil {
		return nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		v := getenv(EnvName(f.Name))
		if err != nil || set[f.Name] || v == "" {
			return
		}
		if listFlags[f.Name] {
			for _, item := range strings.Split(v, ",") {
				if item = strings.TrimSpace(item); item != "" {
					*lists[f.Name] = append(*lists[f.Name], item)
				}
			}
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("config: invalid value %q for %s: %w", v, EnvName(f.Name), e)
		}
	})
	return err
}

func (c *Config) finish(inbound []string, maxConns, nat64Prefix string) error {
	if len(inbound) == 0 {
		inbound = []string{DefaultInbound}
	}
	for _, s := range inbound {
		m, err := ParseMapping(s)
		if err != nil {
			return flagErr("inbound", s, err)
		}
		c.Inbound = append(c.Inbound, m)
	}
	if err := checkDuplicates(c.Inbound); err != nil {
		return err
	}
	if _, err := netip.ParseAddrPort(c.AdminListen); err != nil && c.AdminListen != "off" {
		if _, _, e := net.SplitHostPort(c.AdminListen); e != nil {
			return flagErr("admin-listen", c.AdminListen, e)
		}
	}
	switch c.Engine {
	case EngineAuto, EngineSplice, EngineGoroutine:
	default:
		return flagErr("engine", string(c.Engine), errors.New("want auto, splice or goroutine"))
	}
	if maxConns == "" {
		c.MaxConns, c.MaxConnsDerived = defaultMaxConns(c.ResolvedEngine(), c.EgressListenerFDs()), true
	} else if n, err := strconv.Atoi(maxConns); err != nil || n < 1 {
		return flagErr("max-conns", maxConns, errors.New("want a positive integer"))
	} else {
		c.MaxConns = n
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		zero bool
	}{
		{"idle-timeout", c.IdleTimeout, true}, {"drain-timeout", c.DrainTimeout, true},
		{"handshake-timeout", c.HandshakeTimeout, false}, {"dial-timeout", c.DialTimeout, false},
		{"he-resolution-delay", c.HEResolutionDelay, true}, {"he-attempt-delay", c.HEAttemptDelay, false},
	} {
		if d.v < 0 || (d.v == 0 && !d.zero) {
			return flagErr(d.name, d.v.String(), errors.New("want a positive duration"))
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return flagErr("log-level", c.LogLevel, errors.New("want debug, info, warn or error"))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return flagErr("log-format", c.LogFormat, errors.New("want json or text"))
	}
	switch c.ProxyHandshakes {
	case ProxyHandshakesGnet:
	case ProxyHandshakesRelay:
		if c.ResolvedEngine() != EngineSplice {
			return flagErr("proxy-handshakes", c.ProxyHandshakes, errors.New("relay needs the splice engine (Linux)"))
		}
	default:
		return flagErr("proxy-handshakes", c.ProxyHandshakes, errors.New("want gnet or relay"))
	}
	if c.HEFirstFamilyCount < 1 {
		return flagErr("he-first-family-count", strconv.Itoa(c.HEFirstFamilyCount), errors.New("want at least 1"))
	}
	if c.HEMaxConcurrent < 1 {
		return flagErr("he-max-concurrent", strconv.Itoa(c.HEMaxConcurrent), errors.New("want at least 1"))
	}
	mode, prefixes, err := ParseNAT64(nat64Prefix)
	if err != nil {
		return flagErr("nat64-prefix", nat64Prefix, err)
	}
	c.NAT64Mode, c.NAT64Prefixes = mode, prefixes
	return nil
}

// ResolvedEngine is the engine c.Engine stands for on this OS: auto means what
// splice.ResolveEngine says, the engine main builds.
func (c *Config) ResolvedEngine() Engine { return Engine(splice.ResolveEngine(string(c.Engine))) }

// lastList is a flag whose value is a comma-separated list; given twice, the last one wins, as
// for every other single-valued flag (an argument appended later overrides an earlier one).
type lastList []string

func (l *lastList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *lastList) Set(s string) error {
	*l = []string{s}
	return nil
}

// proxyListen parses the --proxy-listen value (a comma-separated list): "off" alone disables
// the proxy; no value at all means DefaultProxyListen, whose addresses may be skipped at bind
// time on a host without that address family (ProxyListenDefault).
func (c *Config) proxyListen(values []string) error {
	if len(values) == 0 {
		values, c.ProxyListenDefault = []string{DefaultProxyListen}, true
	}
	seen := map[netip.AddrPort]bool{}
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item == "off" {
				if len(values) > 1 || strings.Contains(v, ",") {
					return flagErr("proxy-listen", v, errors.New("off cannot be combined with addresses"))
				}
				c.ProxyListen = nil
				return nil
			}
			ap, err := netip.ParseAddrPort(item)
			if err != nil || ap.Addr().Zone() != "" {
				return flagErr("proxy-listen", v, fmt.Errorf("%q: want IP:PORT ([::1]:1080 for IPv6), a comma-separated list of them, or off", item))
			}
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			if seen[ap] {
				return flagErr("proxy-listen", v, fmt.Errorf("%s given twice", ap))
			}
			seen[ap] = true
			c.ProxyListen = append(c.ProxyListen, ap)
		}
	}
	return nil
}

func flagErr(name, value string, err error) error {
	return fmt.Errorf("config: invalid value %q for --%s (%s): %w", value, name, EnvName(name), err)
}

func checkDuplicates(ms []Mapping) error { return checkDuplicatesOf("inbound", ms) }

func checkDuplicatesOf(flagName string, ms []Mapping) error {
	seen := map[netip.AddrPort]bool{}
	for _, m := range ms {
		if seen[m.Listen] {
			return flagErr(flagName, m.String(), fmt.Errorf("listen address %s given twice", m.Listen))
		}
		seen[m.Listen] = true
	}
	return nil
}

// ParseMapping parses LISTEN=TARGET. LISTEN is PORT (meaning [::]:PORT) or [IPv6]:PORT; TARGET is
// PORT (meaning 127.0.0.1:PORT) or IP:PORT.
func ParseMapping(s string) (Mapping, error) {
	l, t, ok := strings.Cut(s, "=")
	if !ok {
		return Mapping{}, errors.New("want LISTEN=TARGET, for example 8080=127.0.0.1:80")
	}
	listen, err := parseEndpoint(l, netip.IPv6Unspecified())
	if err != nil {
		return Mapping{}, fmt.Errorf("listen side: %w", err)
	}
	if !listen.Addr().Is6() || listen.Addr().Is4In6() {
		return Mapping{}, errors.New("listen side: want an IPv6 address (the sidecar owns the pod's IPv6 side)")
	}
	target, err := parseEndpoint(t, netip.AddrFrom4([4]byte{127, 0, 0, 1}))
	if err != nil {
		return Mapping{}, fmt.Errorf("target side: %w", err)
	}
	if target.Addr().IsUnspecified() {
		return Mapping{}, errors.New("target side: an unspecified address cannot be dialed")
	}
	return Mapping{Listen: listen, Target: target}, nil
}

func parseEndpoint(s string, def netip.Addr) (netip.AddrPort, error) {
	s = strings.TrimSpace(s)
	if p, err := parsePort(s); err == nil {
		return netip.AddrPortFrom(def, p), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is neither PORT nor IP:PORT", s)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port 0 is not allowed", s)
	}
	return netip.AddrPortFrom(ap.Addr().WithZone(ap.Addr().Zone()), ap.Port()), nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, errors.New("bad port")
	}
	return uint16(n), nil
}

// ParseNAT64 parses the --nat64-prefix value: auto, none, or a comma-separated list of RFC 6052
// prefixes. A prefix is accepted exactly when nat64.ValidPrefix accepts it, the rule the data
// path applies to configured prefixes, and is returned masked.
func ParseNAT64(s string) (mode string, prefixes []netip.Prefix, err error) {
	switch s {
	case nat64.ModeAuto, nat64.ModeNone:
		return s, nil, nil
	}
	for _, item := range strings.Split(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(item))
		if err != nil {
			return "", nil, fmt.Errorf("want auto, none or IPv6 prefixes: %w", err)
		}
		if err := nat64.ValidPrefix(p); err != nil {
			var pe *nat64.PrefixError
			if errors.As(err, &pe) {
				return "", nil, badPrefix{pe}
			}
			return "", nil, err
		}
		prefixes = append(prefixes, p.Masked())
	}
	return nat64.ModeStatic, prefixes, nil
}

// badPrefix is nat64's refusal worded as the tail of a flag error, which names the flag and the
// value already: "PREFIX: rule", without nat64's preamble. It unwraps to the *nat64.PrefixError.
type badPrefix struct{ pe *nat64.PrefixError }

func (e badPrefix) Error() string { return e.pe.Prefix.String() + ": " + e.pe.Reason }
func (e badPrefix) Unwrap() error { return e.pe }
