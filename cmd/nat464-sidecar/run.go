package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/nat464/nat464-sidecar/config"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // a failure while running, or a second signal during drain
	exitUsage = 2 // bad flags or a start-up failure (port in use, unreadable file)
)

// run is main without the process globals, so tests can drive it.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	cfg, err := config.Parse(args, getenv, stderr)
	if errors.Is(err, config.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "nat464-sidecar:", err)
		fmt.Fprintln(stderr, "Run 'nat464-sidecar --help' for the flags.")
		return exitUsage
	}
	if cfg.ShowVersion {
		fmt.Fprintln(stdout, "nat464-sidecar", version)
		return exitOK
	}
	lg := newLogger(cfg, stderr)
	sc, err := start(cfg, lg)
	if err != nil {
		lg.Error("start-up failed", "err", err)
		return exitUsage
	}
	return sc.serve(sig)
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve waits for signals: SIGHUP reloads, the first SIGTERM/SIGINT drains, a second exits.
func (sc *sidecar) serve(sig <-chan os.Signal) int {
	for s := range sig {
		if s == syscall.SIGHUP {
			sc.reload()
			continue
		}
		sc.log.Info("signal received: draining", "signal", s.String(), "drain_timeout", sc.cfg.DrainTimeout.String())
		done := make(chan int, 1)
		go func() { done <- sc.drain() }()
		for {
			select {
			case code := <-done:
				return code
			case s2 := <-sig:
				if s2 == syscall.SIGHUP {
					continue
				}
				sc.log.Warn("second signal: exiting now", "signal", s2.String())
				return exitError
			}
		}
	}
	return exitOK
}

// drain fails readiness, stops accepting, lets flows (and UDP sessions) finish up to the drain
// timeout, then cuts what remains.
func (sc *sidecar) drain() int {
	start := time.Now()
	sc.admin.SetDraining()
	ctx, cancel := context.WithTimeout(context.Background(), sc.cfg.DrainTimeout)
	defer cancel()
	udpDone := make(chan struct{})
	var udpActive int
	var udpCut bool
	relays := append(sc.udp, sc.egress.stopUDP()...)
	go func() {
		defer close(udpDone)
		udpActive, udpCut = relays.shutdown(ctx)
	}()
	_ = sc.front.Shutdown(ctx)
	active := sc.engine.Active()
	err := sc.engine.Drain(ctx)
	<-udpDone
	if len(relays) > 0 {
		sc.log.Info("udp drained", "sessions_at_start", udpActive, "cut", udpCut)
	}
	sc.stopBackground()
	_ = sc.engine.Close()
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	_ = sc.admin.Shutdown(actx)
	if err != nil {
		sc.log.Warn("drain timeout: remaining flows cut", "flows_at_start", active, "elapsed", time.Since(start).String())
	} else {
		sc.log.Info("drained", "flows_at_start", active, "elapsed", time.Since(start).String())
	}
	return exitOK
}
