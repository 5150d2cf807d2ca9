package loop

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort is a net.Dialer.Control that sets IP_BIND_ADDRESS_NO_PORT before the dialer binds
// its LocalAddr: the port is then chosen at connect time, per destination, so that binding a
// source address does not make the ephemeral ports run out.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt", serr)
}
