//go:build !linux

package testnet

import (
	"context"
	"errors"
	"net"
	"testing"
)

// Netns is Linux-only; see netns_linux.go.
type Netns struct {
	Name string
	Wrap []string
}

// NewNetns skips off Linux (a failure under CI=true).
func NewNetns(t testing.TB, tag string, addrs ...string) *Netns {
	t.Helper()
	RequireLinux(t)
	return nil
}

var errNoNetns = errors.New("testnet: network namespaces are Linux-only")

// Dial fails off Linux.
func (n *Netns) Dial(ctx context.Context, network, local, addr string) (net.Conn, error) {
	return nil, errNoNetns
}

// Listen fails off Linux.
func (n *Netns) Listen(network, addr string) (net.Listener, error) { return nil, errNoNetns }
