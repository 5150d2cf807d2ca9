package main

import (
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nat464/nat464-sidecar/clients"
	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/loop"
)

// sourceTables are the --inbound-source tables, one per distinct range: mappings that share a
// range share its table, so a client has one source address on all of them.
type sourceTables struct {
	byRange map[netip.Prefix]loop.SourcePicker
	list    []*clients.Table
}

func newSourceTables(cfg *config.Config, lg *slog.Logger, reg prometheus.Registerer) sourceTables {
	var st sourceTables
	mappings := map[netip.Prefix][]string{}
	var order []netip.Prefix
	for _, m := range cfg.Inbound {
		if !m.Source.IsValid() {
			continue
		}
		if mappings[m.Source] == nil {
			order = append(order, m.Source)
		}
		mappings[m.Source] = append(mappings[m.Source], m.Listen.String())
	}
	if len(order) == 0 {
		return st
	}
	st.byRange = map[netip.Prefix]loop.SourcePicker{}
	metrics := clients.NewMetrics(reg)
	for _, r := range order {
		t := clients.New(clients.Config{Range: r, Mappings: mappings[r], Log: lg, Metrics: metrics})
		st.byRange[r] = t
		st.list = append(st.list, t)
	}
	return st
}

// handler serves /clients, or nil (no endpoint) when no mapping has --inbound-source.
func (st sourceTables) handler() http.Handler {
	if len(st.list) == 0 {
		return nil
	}
	return clients.Handler(st.list)
}

// logStart says, per table, where its addresses come from and how many it can give.
func (st sourceTables) logStart(lg *slog.Logger) {
	for _, t := range st.list {
		s, _ := t.Snapshot(func(_, _ netip.Addr) bool { return false })
		lg.Info("inbound source range", "range", s.Range, "mappings", s.Mappings, "capacity", s.Capacity, "endpoint", clients.Path)
	}
}
