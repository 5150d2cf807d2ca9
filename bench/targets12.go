package main

import (
	"fmt"
	"strings"
)

// groupIssue12 names issue 12's targets: host names at the cost of
// literals, and the proxy port ahead of its peers.
const groupIssue12 = "issue 12"

// Issue 12's limits, each a ratio of two contenders in the same run.
const (
	limNameVsLiteral    = 0.95 // conn rate with a cached name, over the literal path's
	limNameVsMicrosocks = 1.25 // conn rate over microsocks'
	limNameCPU          = 0.75 // CPU per connection over microsocks'
	limNameP50          = 0.85 // 1-worker p50 over microsocks'
	limInboundRate      = 1.05 // inbound conn rate over haproxy's
	limInboundCPU       = 1.0  // inbound CPU per connection over haproxy's
	limInboundP50       = 1.0  // inbound 1-worker p50 below haproxy's
	limIdleRSS12        = 1.0  // KiB per idle flow
)

var groupIntro = map[string]string{
	groupIssue12: "The splice engine (the default on Linux). A cached name is " + hostsName +
		" from the hosts file or " + benchName + " once the sidecar's cache holds it; each is held to the same " +
		"sidecar's literal path of its protocol and to microsocks asking for the same name (HTTP CONNECT: " +
		"microsocks' SOCKS5 to " + hostsName + "). Inbound is held to haproxy. Bulk and idle stay where they are.",
}

// nameFamilies are the families with a cached name and the literal family
// of the same protocol.
var nameFamilies = map[string]string{
	FamilySOCKSHosts: FamilySOCKS,
	FamilySOCKSDNS:   FamilySOCKS,
	FamilyHTTPHosts:  FamilyHTTP,
}

// microsocksFor is the microsocks contender a name family is held to.
func microsocksFor(fam string) string {
	if fam == FamilyHTTPHosts {
		fam = FamilySOCKSHosts
	}
	return "microsocks-" + strings.TrimPrefix(fam, FamilySOCKS+"-")
}

// evalIssue12 computes issue 12's targets for the splice sidecar.
func evalIssue12(res *Results) []TargetResult {
	direct := res.contender("direct")
	haproxy := res.contender("haproxy")
	w16, w32 := res.Plan.Workers, res.Plan.Workers32
	rates := []struct {
		test    string
		workers int
	}{{TestRate, w16}, {TestRate32, w32}}
	var out []TargetResult
	add := func(ts ...TargetResult) {
		for _, t := range ts {
			t.Group = groupIssue12
			out = append(out, t)
		}
	}
	for _, c := range res.Contenders {
		prefix := "sidecar-splice-"
		if strings.HasPrefix(c.Name, "sidecar-"+engineRelay+"-") {
			prefix = "sidecar-" + engineRelay + "-" // the same targets, handshakes off gnet
		}
		if !c.Sidecar || !strings.HasPrefix(c.Name, prefix) {
			continue
		}
		switch lit, isName := nameFamilies[c.Family]; {
		case isName:
			literal := res.contender(prefix + lit)
			ms := res.contender(microsocksFor(c.Family))
			for _, r := range rates {
				add(ratioTarget(c, literal, fmt.Sprintf("conn rate (%d workers) vs own literal path", r.workers), r.test, mRate, ">=", limNameVsLiteral),
					ratioTarget(c, ms, fmt.Sprintf("conn rate (%d workers) vs microsocks", r.workers), r.test, mRate, ">=", limNameVsMicrosocks),
					ratioTarget(c, ms, fmt.Sprintf("CPU per connection (%d workers) vs microsocks", r.workers), r.test, mCPUConn, "<=", limNameCPU))
			}
			add(ratioTarget(c, ms, "p50 (1 worker) vs microsocks", TestLatency, mP50, "<=", limNameP50))
		case c.Family == FamilyInbound:
			for _, r := range rates {
				add(ratioTarget(c, haproxy, fmt.Sprintf("conn rate (%d workers) vs haproxy", r.workers), r.test, mRate, ">=", limInboundRate),
					ratioTarget(c, haproxy, fmt.Sprintf("CPU per connection (%d workers) vs haproxy", r.workers), r.test, mCPUConn, "<=", limInboundCPU))
			}
			add(ratioTarget(c, haproxy, "p50 (1 worker) vs haproxy", TestLatency, mP50, "<", limInboundP50))
		}
		if c.Family == FamilyInbound || c.Family == FamilySOCKS {
			add(ratioTarget(c, direct, "bulk up vs direct", TestBulk, mUp, ">=", targetBulk[c.Family]),
				ratioTarget(c, direct, "bulk down vs direct", TestBulk, mDown, ">=", targetBulk[c.Family]))
			add(idleTargets(c, limIdleRSS12)...)
		}
	}
	return out
}
