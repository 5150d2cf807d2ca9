package egress

import (
	"net"
	"sync"
	"sync/atomic"
)

// maxTCPConns bounds the DNS server's open TCP connections: miekg/dns runs a goroutine per
// connection, and a client that opens many and sends nothing would otherwise hold one each
// until its read timeout.
const maxTCPConns = 128

// capListener closes, at once, every connection accepted past max open ones, and counts it.
type capListener struct {
	net.Listener
	max    int64
	open   atomic.Int64
	refuse func()
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			c.Close()
			if l.refuse != nil {
				l.refuse()
			}
			continue
		}
		return &capConn{Conn: c, l: l}, nil
	}
}

type capConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *capConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
