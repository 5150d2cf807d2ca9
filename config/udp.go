package config

import (
	"errors"
	"flag"
	"strconv"
	"time"
)

// DefaultUDPIdleTimeout is --udp-idle-timeout's default.
const DefaultUDPIdleTimeout = 60 * time.Second

// udpFlags are the inbound UDP flags as given, before validation.
type udpFlags struct {
	inbound     []string
	maxSessions string
}

func (u *udpFlags) define(fs *flag.FlagSet, c *Config) {
	fs.Func("inbound-udp", "LISTEN=TARGET inbound UDP mapping, repeatable, same forms as --inbound (default none)", func(s string) error {
		u.inbound = append(u.inbound, s)
		return nil
	})
	fs.DurationVar(&c.UDPIdleTimeout, "udp-idle-timeout", DefaultUDPIdleTimeout, "end a UDP session with no datagram either way for this long")
	fs.StringVar(&u.maxSessions, "udp-max-sessions", "", "cap on UDP sessions, which also take --max-conns slots (default: the --max-conns value)")
}

// udp validates the inbound UDP flags; it runs after finish, which sets MaxConns.
//
// A session holds one fd (its socket connected to the target) and takes one of the --max-conns
// slots a TCP flow takes (a flow holds two fds or more), so the derived bound, MaxConns, keeps
// flows and sessions together within RLIMIT_NOFILE as --max-conns alone does.
func (c *Config) udp(u udpFlags) error {
	for _, s := range u.inbound {
		m, err := ParseMapping(s)
		if err != nil {
			return flagErr("inbound-udp", s, err)
		}
		c.InboundUDP = append(c.InboundUDP, m)
	}
	if err := checkDuplicatesOf("inbound-udp", c.InboundUDP); err != nil {
		return err
	}
	if c.UDPIdleTimeout <= 0 {
		return flagErr("udp-idle-timeout", c.UDPIdleTimeout.String(), errors.New("want a positive duration"))
	}
	if u.maxSessions == "" {
		c.UDPMaxSessions, c.UDPMaxSessionsDerived = c.MaxConns, true
		return nil
	}
	n, err := strconv.Atoi(u.maxSessions)
	if err != nil || n < 1 {
		return flagErr("udp-max-sessions", u.maxSessions, errors.New("want a positive integer"))
	}
	c.UDPMaxSessions = n
	return nil
}
