//go:build !unix

package splice

import (
	"fmt"
	"net"
)

// DetachFD is not available where sockets are not file descriptors; it closes c.
func DetachFD(c net.Conn) (int, error) {
	c.Close()
	return -1, fmt.Errorf("splice: cannot detach fd from %T on this system", c)
}

// closeFD has nothing to close where sockets are not file descriptors.
func closeFD(int) {}
