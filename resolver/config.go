package resolver

import (
	"net/netip"
	"time"
)

// Config configures a Resolver. The zero value reads /etc/resolv.conf and /etc/hosts and
// applies the defaults documented on each field; New never writes them back.
type Config struct {
	// ResolvConf is the resolv.conf path; if empty, /etc/resolv.conf. A missing file means
	// the glibc fallback servers ([::1]:53, 127.0.0.1:53); see (*Resolver).ResolvConf.
	ResolvConf string
	// HostsFile is the hosts path; if empty, /etc/hosts; "-" disables the hosts file.
	HostsFile string

	// HostsSkip are ranges whose hosts-file addresses the resolver ignores, as if the lines
	// were not there; a name left with no address is asked of DNS. Transparent egress passes
	// its range: a hosts-file name with an egress address is dialed by its DNS addresses.
	HostsSkip []netip.Prefix

	// Servers, if non-empty, replace the resolv.conf nameservers.
	Servers []netip.AddrPort
	// Search, if non-nil, replaces the resolv.conf search list (an empty non-nil slice means
	// no search list).
	Search []string
	// Ndots, if non-zero, replaces the resolv.conf ndots; negative means 0.
	Ndots int
	// Timeout, if non-zero, replaces the resolv.conf per-try timeout.
	Timeout time.Duration
	// Attempts, if non-zero, replaces the resolv.conf attempts (rounds over all servers).
	Attempts int

	// MinTTL and MaxTTL clamp how long answers stay cached, positive and negative; if zero,
	// 5s and 1h.
	MinTTL, MaxTTL time.Duration
	// MaxCacheEntries bounds the cache; if zero, 8192. When full, expired entries are
	// dropped first, then arbitrary ones.
	MaxCacheEntries int
	// MaxInFlight bounds concurrent upstream queries; if zero, 256. Queries over the bound
	// wait (counted in Metrics) until a slot frees or their lookups give up.
	MaxInFlight int
	// LateReplyWindow is how long a query keeps running, so that its reply still fills the
	// cache, after every lookup waiting for it has gone (RFC 8305 §5); if zero, 1s.
	LateReplyWindow time.Duration

	// Metrics receives counters; nil disables them.
	Metrics *Metrics
	// Now is the clock for cache expiry and file re-reads; if nil, time.Now.
	Now func() time.Time
}

const (
	defaultMinTTL          = 5 * time.Second
	defaultMaxTTL          = time.Hour
	defaultMaxCacheEntries = 8192
	defaultMaxInFlight     = 256
	defaultLateReplyWindow = time.Second
	// statInterval is the shortest gap between two stat calls on the watched files.
	statInterval = time.Second
	// maxCNAMEDepth bounds CNAME chains, within one answer and across re-queries.
	maxCNAMEDepth = 8
	// maxAddrs bounds the addresses kept from one answer, per name and type: the first ones
	// in the server's order. Happy Eyeballs would otherwise race every one of them.
	maxAddrs = 32
	// ednsSize is the advertised EDNS0 UDP payload size (DNS flag day 2020).
	ednsSize = 1232
)

func (c *Config) resolvConfPath() string {
	if c.ResolvConf == "" {
		return "/etc/resolv.conf"
	}
	return c.ResolvConf
}

func (c *Config) hostsPath() string {
	switch c.HostsFile {
	case "":
		return "/etc/hosts"
	case "-":
		return ""
	}
	return c.HostsFile
}

func (c *Config) minTTL() time.Duration {
	if c.MinTTL <= 0 {
		return defaultMinTTL
	}
	return c.MinTTL
}

func (c *Config) maxTTL() time.Duration {
	if c.MaxTTL <= 0 {
		return defaultMaxTTL
	}
	return max(c.MaxTTL, c.minTTL())
}

func (c *Config) maxCacheEntries() int {
	if c.MaxCacheEntries <= 0 {
		return defaultMaxCacheEntries
	}
	return c.MaxCacheEntries
}

func (c *Config) maxInFlight() int {
	if c.MaxInFlight <= 0 {
		return defaultMaxInFlight
	}
	return c.MaxInFlight
}

func (c *Config) lateReplyWindow() time.Duration {
	if c.LateReplyWindow <= 0 {
		return defaultLateReplyWindow
	}
	return c.LateReplyWindow
}

func (c *Config) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// apply lays the Config overrides over a parsed resolv.conf, returning a new value.
func (c *Config) apply(rc *ResolvConf) *ResolvConf {
	out := *rc
	if len(c.Servers) > 0 {
		out.Servers = append([]netip.AddrPort(nil), c.Servers...)
	}
	if c.Search != nil {
		out.Search = absNames(c.Search)
	}
	if c.Ndots != 0 {
		out.Ndots = min(max(c.Ndots, 0), maxNdots)
	}
	if c.Timeout > 0 {
		out.Timeout = c.Timeout
	}
	if c.Attempts > 0 {
		out.Attempts = c.Attempts
	}
	return &out
}
