package loop

import "golang.org/x/sys/unix"

// writeAndClose sends a short final reply on a non-blocking socket (best effort: what the
// socket buffer does not take is dropped) and closes it.
func writeAndClose(fd int, reply []byte) {
	if len(reply) > 0 {
		_, _ = unix.Write(fd, reply)
	}
	unix.Close(fd)
}
