//go:build !linux

package loop

import "syscall"

// bindNoPort does nothing where IP_BIND_ADDRESS_NO_PORT does not exist: the dialer's bind picks
// the port, which is all other systems offer.
func bindNoPort(_, _ string, _ syscall.RawConn) error { return nil }
