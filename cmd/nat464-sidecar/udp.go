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

// udpRelays are UDP relays: the --inbound-udp ones in flag order, or transparent egress's.
type udpRelays []*udp.Relay

// udpBase is what every UDP relay, inbound or egress, shares: the idle timeout, the one session
// bound (--udp-max-sessions, a slot of which every session takes with one of flows, the limiter
// the TCP front end uses), the metrics and the log.
func udpBase(cfg *config.Config, lg *slog.Logger, reg prometheus.Registerer, flows *loop.Limiter) udp.Config {
	return udp.Config{IdleTimeout: cfg.UDPIdleTimeout, MaxSessions: cfg.UDPMaxSessions,
		Limit: udp.Limits(loop.NewLimiter(cfg.UDPMaxSessions), flows), Metrics: udp.NewMetrics(reg), Log: lg}
}

// startUDP binds every --inbound-udp mapping. On error the relays already started are closed.
func startUDP(cfg *config.Config, base udp.Config) (udpRelays, error) {
	var rs udpRelays
	for _, mp := range cfg.InboundUDP {
		c := base
		c.Listen, c.Target, c.Engine = mp.Listen, mp.Target, string(cfg.ResolvedEngine())
		r, err := udp.Listen(c)
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

// udpReadyCheck passes while every relay's loop (or listener) answers: the inbound ones and
// those transparent egress has opened so far. UDP targets are not probed: nothing tells that a
// UDP server is up without speaking its protocol.
func udpReadyCheck(inbound udpRelays, egress *egressUDP) []admin.Check {
	if len(inbound) == 0 && egress == nil {
		return nil
	}
	return []admin.Check{{Name: "udp listeners", Fn: func(ctx context.Context) error {
		for _, r := range append(inbound, egress.all()...) {
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
