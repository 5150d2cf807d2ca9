package loop

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nat464/nat464-sidecar/socks"
)

// ErrSelf is wrapped when a proxy destination is one of the sidecar's own listening sockets.
// The error also wraps socks.ErrPolicy, so that the client hears "not allowed" (SOCKS5 02,
// SOCKS4 91, HTTP 403).
var ErrSelf = errors.New("loop: destination is one of the sidecar's own listening sockets")

// Listener is one of the sidecar's listening sockets, as bound.
type Listener struct {
	// Name says what it serves: "proxy", "inbound" or "admin".
	Name string
	// Addr is the bound address, its port resolved. An unspecified address is a wildcard: it
	// accepts connections to every local address of its family, loopback included.
	Addr netip.AddrPort
	// DualStack marks an IPv6 wildcard bound without IPV6_V6ONLY, which accepts IPv4 too. The
	// front ends bind IPv6 with IPV6_V6ONLY; net.Listen("tcp", "[::]:p") does not.
	DualStack bool
}

func (l Listener) String() string { return l.Name + " " + l.Addr.String() }

// OwnSockets is the set of the sidecar's own listening sockets. Check refuses a destination
// that would connect to one of them, so that a proxy request can never come back into the
// sidecar (one client could otherwise chain CONNECTs through the proxy to itself until the
// open-file limit). The zero value is an empty set; it is safe for concurrent use.
type OwnSockets struct {
	// LocalAddrs lists the addresses of the pod's interfaces, which a wildcard listener
	// accepts besides loopback (test seam). If nil, net.InterfaceAddrs. Its answer is reused
	// for a second, and only asked for when a destination's port is a wildcard listener's.
	LocalAddrs func() ([]netip.Addr, error)

	ls atomic.Pointer[[]Listener]

	mu      sync.Mutex // serialises Add; guards local and localAt
	local   []netip.Addr
	localAt time.Time
}

// localTTL is how long the interface addresses are reused.
const localTTL = time.Second

// Add puts listeners into the set.
func (o *OwnSockets) Add(ls ...Listener) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var cur []Listener
	if p := o.ls.Load(); p != nil {
		cur = *p
	}
	next := append(append([]Listener(nil), cur...), ls...)
	for i := range next[len(cur):] {
		l := &next[len(cur)+i]
		l.Addr = netip.AddrPortFrom(l.Addr.Addr().Unmap(), l.Addr.Port())
	}
	o.ls.Store(&next)
}

// Listeners returns the set.
func (o *OwnSockets) Listeners() []Listener {
	if o == nil {
		return nil
	}
	if p := o.ls.Load(); p != nil {
		return append([]Listener(nil), *p...)
	}
	return nil
}

// Check returns nil when a connect to dest cannot reach one of the listeners, otherwise an
// error wrapping ErrSelf and socks.ErrPolicy that names the listener. It has the signature of
// eyeballs.Dialer.Approve and of policy.Engine.Self (the built-in self rule). dest is taken as the kernel would connect it: an IPv4-mapped
// address is IPv4, and an unspecified one (0.0.0.0, ::) means loopback. Addresses outside
// loopback and the interfaces' addresses (a NAT64-synthesized one, for instance) are not
// local and always pass. A nil *OwnSockets allows everything.
func (o *OwnSockets) Check(dest netip.AddrPort) error {
	if o == nil {
		return nil
	}
	p := o.ls.Load()
	if p == nil {
		return nil
	}
	a := connectAddr(dest.Addr())
	for _, l := range *p {
		if l.Addr.Port() == dest.Port() && o.reaches(l, a) {
			return &selfError{dest: dest, l: l}
		}
	}
	return nil
}

// connectAddr is the address a connect to a actually goes to.
func connectAddr(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	switch {
	case a == netip.IPv4Unspecified():
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case a == netip.IPv6Unspecified():
		return netip.IPv6Loopback()
	}
	return a
}

// reaches reports whether a connect to a (see connectAddr) on l's port lands on l.
func (o *OwnSockets) reaches(l Listener, a netip.Addr) bool {
	la := l.Addr.Addr().WithZone("")
	switch {
	case !la.IsUnspecified():
		return a == la
	case la.Is4() && !a.Is4(), la.Is6() && !a.Is6() && !l.DualStack:
		return false
	}
	return o.isLocal(a)
}

func (o *OwnSockets) isLocal(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	for _, l := range o.localAddrs() {
		if l == a {
			return true
		}
	}
	return false
}

// localAddrs returns the interfaces' addresses, read at most once per localTTL. When they
// cannot be read, only loopback counts as local.
func (o *OwnSockets) localAddrs() []netip.Addr {
	o.mu.Lock()
	defer o.mu.Unlock()
	if now := time.Now(); o.localAt.IsZero() || now.Sub(o.localAt) >= localTTL {
		o.local, o.localAt = o.readLocal(), now
	}
	return o.local
}

func (o *OwnSockets) readLocal() []netip.Addr {
	if o.LocalAddrs != nil {
		as, _ := o.LocalAddrs()
		out := make([]netip.Addr, len(as))
		for i, a := range as {
			out[i] = a.Unmap().WithZone("")
		}
		return out
	}
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(ifas))
	for _, ifa := range ifas {
		if ipn, ok := ifa.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// selfError is a destination that is one of the sidecar's listeners.
type selfError struct {
	dest netip.AddrPort
	l    Listener
}

func (e *selfError) Error() string {
	return fmt.Sprintf("loop: %s is the sidecar's own %s socket (listening on %s)", e.dest, e.l.Name, e.l.Addr)
}

func (e *selfError) Is(target error) bool { return target == ErrSelf || target == socks.ErrPolicy }

// addOwn hands the bound listeners (inbound first, in config order, then the proxy) to
// Config.Own.
func (c *Config) addOwn(bound []net.Addr) {
	if c.Own == nil {
		return
	}
	for i, a := range bound {
		ta, ok := a.(*net.TCPAddr)
		if !ok {
			continue
		}
		name := "proxy"
		if i < len(c.Inbound) {
			name = "inbound"
		}
		c.Own.Add(Listener{Name: name, Addr: ta.AddrPort()})
	}
}
