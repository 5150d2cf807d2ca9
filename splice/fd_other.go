//go:build !unix

package splice

import (
	"fmt"
	"net"
	"time"
)

// DetachFD is not available where sockets are not file descriptors; it closes c.
func DetachFD(c net.Conn) (int, error) {
	c.Close()
	return -1, fmt.Errorf("splice: cannot detach fd from %T on this system", c)
}

// waitConnect cannot look at a socket's connect state here; the flow fails.
func waitConnect(net.Conn, time.Duration) error { return ErrUnsupported }
