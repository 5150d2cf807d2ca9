package policy

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts the Engine's decisions per rule, and reloads. A nil *Metrics counts nothing.
type Metrics struct {
	decisions *prometheus.CounterVec
	rules     prometheus.Gauge
	reloads   *prometheus.CounterVec
}

// NewMetrics registers the policy's collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "nat464", "policy"
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "decisions_total", Help: "Egress policy decisions, by the rule that decided (its canonical text; built-in rules and the default included) and its action. One series per rule in force."},
			[]string{"rule", "action"}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "rules", Help: "Rules of the egress policy file in force (the default line and the built-in rules not counted)."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "reloads_total", Help: "Egress policy file (re)loads, by result (ok; error: the previous rules stay in force)."},
			[]string{"result"}),
	}
	reg.MustRegister(m.decisions, m.rules, m.reloads)
	for _, r := range []string{RuleSelf, RuleLinkLocal4, RuleLinkLocal6} {
		m.decisions.WithLabelValues(r, "deny")
	}
	return m
}

// Reloaded counts a (re)load of the policy file: err nil means the new rules are in force.
func (m *Metrics) Reloaded(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
}

// table builds p's table with its series looked up once.
func (m *Metrics) table(p *Policy) *table {
	t := &table{p: p, names: make([]prometheus.Counter, len(p.Names)),
		prefixes: make([]prometheus.Counter, len(p.Prefixes))}
	if m == nil {
		return t
	}
	series := func(label, action string) prometheus.Counter {
		t.labels = append(t.labels, [2]string{label, action})
		return m.decisions.WithLabelValues(label, action)
	}
	for i := range p.Names {
		t.names[i] = series(p.Names[i].String(), p.Names[i].Action.String())
	}
	for i := range p.Prefixes {
		t.prefixes[i] = series(p.Prefixes[i].String(), p.Prefixes[i].Action.String())
	}
	t.def = series(defaultLabel(p.Default), p.Default.String())
	return t
}

// forget deletes the series of old that cur does not have.
func (m *Metrics) forget(old, cur [][2]string) {
	if m == nil {
		return
	}
	keep := make(map[[2]string]bool, len(cur))
	for _, l := range cur {
		keep[l] = true
	}
	for _, l := range old {
		if !keep[l] {
			m.decisions.DeleteLabelValues(l[0], l[1])
		}
	}
}

func (m *Metrics) setRules(n int) {
	if m != nil {
		m.rules.Set(float64(n))
	}
}

// builtin counts a refusal by a built-in rule.
func (m *Metrics) builtin(rule string) {
	if m != nil {
		m.decisions.WithLabelValues(rule, "deny").Inc()
	}
}
