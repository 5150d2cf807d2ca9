//go:build unix

package splice

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

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

// waitConnect waits until the non-blocking connect(2) behind c completes, for at most timeout.
// A failure is a *net.OpError wrapping the errno (ETIMEDOUT when the timeout expires).
func waitConnect(c net.Conn, timeout time.Duration) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("splice: cannot wait for connect on %T", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("splice: wait for connect: %w", err)
	}
	c.SetWriteDeadline(time.Now().Add(timeout))
	defer c.SetWriteDeadline(time.Time{})
	var connErr error
	err = rc.Write(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			connErr = err
		case v != 0:
			connErr = unix.Errno(v)
		default:
			if _, err := unix.Getpeername(int(fd)); err != nil {
				return false // still in progress: wait until writable
			}
		}
		return true
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		connErr = unix.ETIMEDOUT
	} else if err != nil && connErr == nil {
		connErr = err
	}
	if connErr == nil {
		return nil
	}
	return &net.OpError{Op: "dial", Net: "tcp", Source: c.LocalAddr(), Err: os.NewSyscallError("connect", connErr)}
}
