package main

import (
	"runtime"

	"github.com/nat464/nat464-sidecar/loop"
	"github.com/nat464/nat464-sidecar/splice"
)

// loopPlan is how many event loops the sidecar runs, for cpus usable CPUs.
//
// A splice loop blocks in epoll_wait(2) while it holds a Go P. With fewer Ps than loops, a loop
// whose wait returns finds no P free and sleeps until the runtime's monitor takes one back from
// a loop still blocked, which costs a futex round trip and keeps the monitor polling at its
// fastest rate. So the sidecar runs with one P per splice loop on top of GOMAXPROCS's own (which
// follows a container's CPU limit): measured on the bench's single-connection latency test,
// -10% p50 and -10% CPU per connection. gnet's loops get no P of their own: each of them calls
// runtime.Gosched whenever a poll comes back empty, and with Ps to spare every such call wakes
// an idle thread to look for work (measured: -6..-11% SOCKS5 connections/s when they had one).
type loopPlan struct {
	cpus   int // GOMAXPROCS as the runtime chose it
	splice int // splice engine epoll loops (0 with the goroutine engine)
	gnet   int // gnet loops for the proxy port (0 without the proxy or gnet)
}

func planLoops(cpus int, engine string, proxy bool) loopPlan {
	p := loopPlan{cpus: cpus}
	if engine == "splice" {
		p.splice = min(cpus, splice.MaxLoops)
		if proxy {
			p.gnet = min(cpus, loop.MaxEventLoops)
		}
	}
	return p
}

// runtimeProcs is GOMAXPROCS as the runtime set it at start-up, before raiseProcs.
var runtimeProcs = runtime.GOMAXPROCS(0)

// procs is the GOMAXPROCS that gives every splice loop its own P.
func (p loopPlan) procs() int { return p.cpus + p.splice }

// raiseProcs sets GOMAXPROCS to p.procs() unless the operator set GOMAXPROCS, which wins. It
// returns the value in force.
func raiseProcs(p loopPlan, getenv func(string) string) int {
	if getenv("GOMAXPROCS") != "" || p.procs() == p.cpus {
		// Left alone, the runtime keeps following the container's CPU limit.
		return runtime.GOMAXPROCS(0)
	}
	runtime.GOMAXPROCS(p.procs())
	return p.procs()
}
