package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseUDP(t *testing.T) {
	c, err := Parse(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.InboundUDP) != 0 || c.UDPIdleTimeout != 60*time.Second || !c.UDPMaxSessionsDerived || c.UDPMaxSessions != c.MaxConns {
		t.Errorf("defaults: udp %v idle %v max %d (derived %v, max-conns %d)", c.InboundUDP, c.UDPIdleTimeout,
			c.UDPMaxSessions, c.UDPMaxSessionsDerived, c.MaxConns)
	}
	c, err = Parse([]string{"--inbound-udp", "5353=127.0.0.1:53", "--inbound-udp", "[2001:db8::5]:514=514",
		"--udp-idle-timeout", "5s", "--udp-max-sessions", "10", "--max-conns", "20"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.InboundUDP) != 2 || c.InboundUDP[0].String() != "[::]:5353=127.0.0.1:53" ||
		c.InboundUDP[1].String() != "[2001:db8::5]:514=127.0.0.1:514" {
		t.Errorf("InboundUDP = %v", c.InboundUDP)
	}
	if c.UDPIdleTimeout != 5*time.Second || c.UDPMaxSessions != 10 || c.UDPMaxSessionsDerived {
		t.Errorf("idle %v max %d derived %v", c.UDPIdleTimeout, c.UDPMaxSessions, c.UDPMaxSessionsDerived)
	}
	// Without --inbound the TCP default stays; UDP and TCP may share a listen address.
	if len(c.Inbound) != 1 || c.Inbound[0].String() != "[::]:8080=127.0.0.1:80" {
		t.Errorf("Inbound = %v", c.Inbound)
	}
	if _, err := Parse([]string{"--inbound", "53=53", "--inbound-udp", "53=53"}, env(nil), io.Discard); err != nil {
		t.Errorf("TCP and UDP on one port: %v", err)
	}
	// An explicit --max-conns is the derived UDP bound.
	if c, err := Parse([]string{"--max-conns", "77"}, env(nil), io.Discard); err != nil || c.UDPMaxSessions != 77 {
		t.Errorf("derived from --max-conns 77: %v %v", c.UDPMaxSessions, err)
	}
}

func TestParseUDPEnv(t *testing.T) {
	c, err := Parse([]string{"--udp-max-sessions", "3"}, env(map[string]string{
		"NAT464_INBOUND_UDP":      "5353=53, [2001:db8::1]:514=127.0.0.1:514",
		"NAT464_INBOUND":          "9090=90",
		"NAT464_UDP_IDLE_TIMEOUT": "2m",
		"NAT464_UDP_MAX_SESSIONS": "9", // the flag wins
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.InboundUDP) != 2 || c.InboundUDP[1].Listen.String() != "[2001:db8::1]:514" {
		t.Errorf("InboundUDP = %v", c.InboundUDP)
	}
	if len(c.Inbound) != 1 || c.Inbound[0].String() != "[::]:9090=127.0.0.1:90" {
		t.Errorf("Inbound = %v: the UDP twin must not reach it", c.Inbound)
	}
	if c.UDPIdleTimeout != 2*time.Minute || c.UDPMaxSessions != 3 {
		t.Errorf("idle %v max %d", c.UDPIdleTimeout, c.UDPMaxSessions)
	}
	// Given as flags, the env twin is ignored, as for --inbound.
	c, err = Parse([]string{"--inbound-udp", "1=1"}, env(map[string]string{"NAT464_INBOUND_UDP": "2=2"}), io.Discard)
	if err != nil || len(c.InboundUDP) != 1 || c.InboundUDP[0].Listen.Port() != 1 {
		t.Errorf("flag and env: %v %v", c.InboundUDP, err)
	}
}

func TestParseUDPErrorsNameTheFlag(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--inbound-udp", "bad"}, "--inbound-udp"},
		{[]string{"--inbound-udp", "127.0.0.1:53=53"}, "want an IPv6 address"},
		{[]string{"--inbound-udp", "53=53", "--inbound-udp", "53=54"}, "given twice"},
		{[]string{"--udp-idle-timeout", "0"}, "--udp-idle-timeout"},
		{[]string{"--udp-idle-timeout", "-1s"}, "--udp-idle-timeout"},
		{[]string{"--udp-idle-timeout", "soon"}, "udp-idle-timeout"},
		{[]string{"--udp-max-sessions", "0"}, "--udp-max-sessions"},
		{[]string{"--udp-max-sessions", "lots"}, "--udp-max-sessions"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := Parse(tt.args, env(nil), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to name %q", err, tt.want)
			}
		})
	}
	if _, err := Parse(nil, env(map[string]string{"NAT464_INBOUND_UDP": "x"}), io.Discard); err == nil ||
		!strings.Contains(err.Error(), "--inbound-udp") {
		t.Errorf("bad env mapping: %v", err)
	}
}
