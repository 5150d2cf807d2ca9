package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nat464/nat464-sidecar/admin"
	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/loop"
)

// outbound is the proxy's dialing stack: resolver, NAT64 prefixes and the Happy Eyeballs dialer.
type outbound struct{}

func newOutbound(cfg *config.Config, lg *slog.Logger, reg prometheus.Registerer) (*outbound, error) {
	return &outbound{}, nil
}

func (o *outbound) dialer() loop.Dialer          { return nil }
func (o *outbound) awaitStartup(lg *slog.Logger) {}
func (o *outbound) readyChecks() []admin.Check   { return nil }
func (o *outbound) info() map[string]any         { return nil }
func (o *outbound) close()                       {}
