//go:build unix

package splice

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// DetachFD takes the socket out of c: it returns a duplicate fd (close-on-exec, non-blocking)
// that the caller owns, and closes c. The socket itself stays open through the returned fd.
// c must implement syscall.Conn (*net.TCPConn does); c is closed in every case.
func DetachFD(c net.Conn) (int, error) {
	defer c.Close()
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("splice: cannot detach fd from %T", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("splice: detach fd: %w", err)
	}
	fd := -1
	var dupErr error
	err = rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err == nil {
		err = dupErr
	}
	if err != nil {
		return -1, os.NewSyscallError("fcntl", err)
	}
	// The duplicate shares the open file description, and with it O_NONBLOCK: the Go runtime
	// keeps every socket it hands out non-blocking, so no fcntl(F_SETFL) is needed.
	return fd, nil
}

// closeFD closes a raw socket handed to an engine that does not take fds.
func closeFD(fd int) { unix.Close(fd) }
