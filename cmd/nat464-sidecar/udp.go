package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nat464/nat464-sidecar/admin"
	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/loop"
	"github.com/nat464/nat464-sidecar/udp"
)

// udpRelays are the --inbound-udp relays, in flag order.
type udpRelays []*udp.Relay

// startUDP binds every --inbound-udp mapping. Sessions take a slot of the UDP bound and one of
// flows, the limiter the TCP front end uses. On error the relays already started are closed.
func startUDP(cfg *config.Config, lg *slog.Logger, reg prometheus.Registerer, flows *loop.Limiter) (udpRelays, error) {
	if len(cfg.InboundUDP) == 0 {
		return nil, nil
	}
	m := udp.NewMetrics(reg)
	limit := udp.Limits(loop.NewLimiter(cfg.UDPMaxSessions), flows)
	var rs udpRelays
	for _, mp := range cfg.InboundUDP {
		r, err := udp.Listen(udp.Config{Listen: mp.Listen, Target: mp.Target, IdleTimeout: cfg.UDPIdleTimeout,
			MaxSessions: cfg.UDPMaxSessions, Limit: limit, Engine: string(cfg.ResolvedEngine()), Metrics: m, Log: lg})
		if err != nil {
			rs.close()
			return nil, fmt.Errorf("inbound-udp %s: %w", mp, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

func (rs udpRelays) logStart(lg *slog.Logger) {
	for _, r := range rs {
		lg.Info("inbound udp listening", "listen", r.Addr().String(), "target", r.Target().String())
	}
}

// readyCheck passes while every relay's loop (or listener) answers. UDP targets are not probed:
// nothing tells that a UDP server is up without speaking its protocol.
func (rs udpRelays) readyCheck() []admin.Check {
	if len(rs) == 0 {
		return nil
	}
	return []admin.Check{{Name: "udp listeners", Fn: func(ctx context.Context) error {
		for _, r := range rs {
			if err := r.Ping(ctx); err != nil {
				return fmt.Errorf("%s: %w", r.Addr(), err)
			}
		}
		return nil
	}}}
}

// shutdown drains every relay at once: no new sessions, existing ones run until ctx ends. It
// returns the sessions alive when it began and whether some were cut.
func (rs udpRelays) shutdown(ctx context.Context) (active int, cut bool) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, r := range rs {
		active += r.Active()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				mu.Lock()
				cut = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return active, cut
}

func (rs udpRelays) close() {
	for _, r := range rs {
		_ = r.Close()
	}
}
