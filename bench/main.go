// Command bench is the macro benchmark harness of nat464-sidecar: an
// IPv4-only app to proxy to (serve), load generators (rate, bulk, idle),
// a driver that runs direct, the sidecar and peer proxies under the same load
// (run), and a Markdown/JSON/SVG report with pprof top tables.
//
// It is its own module so that its dependencies (gonum/plot, pprof) never
// reach the sidecar binary. Nothing here is imported by the product.
//
// Usage:
//
//	bench serve     [-listen 127.0.0.1:0] [-dual]
//	bench dns       [-listen 127.0.0.1:0] [-name app.bench.test] [-ttl 300s]
//	bench socks5min -listen ADDR
//	bench rate      -target ADDR [-socks PROXY|-http PROXY] [-workers N] [-duration D] [-client-close] [-pid PID]
//	bench bulk      -target ADDR [-socks PROXY|-http PROXY] [-streams N] [-duration D] [-pid PID]
//	bench idle      -target ADDR [-socks PROXY|-http PROXY] -flows K -pid PID
//	bench run       [-mode quick|full] [-sidecar PATH] [-out DIR] [-only NAMES] [-idle-flows K] [-dns-listen ADDR]
//
// ADDR is the app (bench serve), an inbound mapping in front of it, or with
// -socks or -http the host:port (a literal or a name) the SOCKS5 or HTTP
// CONNECT proxy is asked for. PID is the proxy whose CPU, memory and fds are
// measured. dns is the name server of the DNS tests and socks5min the
// go-socks5-min peer. See README.md for what run measures and reports.
package main

import (
	"errors"
	"fmt"
	"os"
)

var (
	errShort          = errors.New("bench: socks: short reply")
	errSOCKSVer       = errors.New("bench: socks: bad version")
	errSOCKSMethod    = errors.New("bench: socks: no acceptable method")
	errSOCKSRep       = errors.New("bench: socks: request failed")
	errSOCKSAtyp      = errors.New("bench: socks: bad address type")
	errSOCKSDest      = errors.New("bench: socks: destination is not host:port")
	errHTTPStatus     = errors.New("bench: http connect: request failed")
	errHTTPHeader     = errors.New("bench: http connect: malformed response")
	errBadEcho        = errors.New("bench: echo mismatch")
	errNoEOF          = errors.New("bench: expected EOF from the app")
	errNotEstablished = errors.New("bench: idle flows not established")
	errProcStat       = errors.New("bench: malformed /proc/PID/stat")
	errNoProc         = errors.New("bench: /proc sampling needs Linux")
	errNotReady       = errors.New("bench: process did not become ready")
	errExited         = errors.New("bench: process exited")
	errBroken         = errors.New("bench: contender is broken")
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	raiseNoFile()
	cmd, args := os.Args[1], os.Args[2:]
	if cmd == "help" || cmd == "-h" || cmd == "--help" {
		usage()
		return
	}
	run, ok := commands[cmd]
	if !ok {
		usage()
		os.Exit(2)
	}
	if err := run(args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// commands are the subcommands by name.
var commands = map[string]func(args []string) error{
	"serve":     cmdServe,
	"dns":       cmdDNS,
	"socks5min": cmdSOCKS5Min,
	"rate":      cmdRate,
	"bulk":      cmdBulk,
	"idle":      cmdIdle,
	"run":       cmdRun,
	"udp":       cmdUDP,
}

// childCommands are the subcommands the driver runs as children of its own
// executable (a test binary plays them too: see TestMain).
var childCommands = []string{"serve", "dns", "socks5min"}

func usage() {
	fmt.Fprint(os.Stderr, `usage: bench serve|dns|socks5min|rate|bulk|idle|run|udp [flags]
  serve      the app on 127.0.0.1 (and [::1] with -dual): echo, echo-once, sink, source, hold
  dns        name server answering app.bench.test with ::1 and 127.0.0.1
  socks5min  go-socks5-min, a naive SOCKS5 CONNECT server (a peer)
  rate       connection per request, 64 B echo, N workers; conns/s and latency
  bulk       N long streams each direction; Gbit/s
  idle       K idle flows; RSS, PSS and fds per flow of a proxy PID
  run        the driver: all contenders, all tests, report in -out
  udp        UDP: inbound (both engines) and egress through the sidecar, direct and socat, 64/1400 B, 1/64 sessions; idle cost
`)
}
