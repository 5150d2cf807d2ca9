package loop

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/proxyproto"
)

// SourcePicker gives an inbound client the loopback address its connection to the app comes
// from (--inbound-source); clients.Table implements it. ok false means none: connect from the
// kernel's choice.
type SourcePicker interface {
	Source(client netip.Addr) (src netip.Addr, ok bool)
}

// peerFunc is what an inbound mapping with options does per connection, given the client's
// address and the address it reached: the bytes the app gets first and the source to connect
// from (invalid: the kernel's choice). It is splice.Inbound.Peer.
type peerFunc func(client, local netip.AddrPort) (toUpstream []byte, source netip.Addr)

// inboundPeer returns m's peerFunc and whether it needs the local address (the PROXY header
// does), or nil for a mapping without options, which then costs nothing per connection.
func (c *Config) inboundPeer(m config.Mapping) (peerFunc, bool, error) {
	var pick SourcePicker
	if m.Source.IsValid() {
		if pick = c.Sources[m.Source]; pick == nil {
			return nil, false, fmt.Errorf("loop: mapping %s: no source table for %s", m.Listen, m.Source)
		}
	}
	v := m.ProxyProtocol
	if v == 0 && pick == nil {
		return nil, false, nil
	}
	return func(client, local netip.AddrPort) ([]byte, netip.Addr) {
		var hdr []byte
		if v != 0 {
			hdr = proxyproto.Append(make([]byte, 0, proxyproto.MaxV1), v, client, local)
		}
		var src netip.Addr
		if pick != nil {
			src, _ = pick.Source(client.Addr())
		}
		return hdr, src
	}, v != 0, nil
}

// dialInbound connects the goroutine front end to m's target, from source when it is valid
// (bound with IP_BIND_ADDRESS_NO_PORT where the OS has it, see bindNoPort).
func dialInbound(ctx context.Context, target string, source netip.Addr) (net.Conn, error) {
	var d net.Dialer
	if source.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: source.AsSlice()}
		d.Control = bindNoPort
	}
	return d.DialContext(ctx, "tcp", target)
}

// addrPort is a net.Addr of a TCP connection as a netip.AddrPort (invalid for anything else).
func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}
