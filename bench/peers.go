package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
)

// haproxyConf is HAProxy in TCP mode with kernel splicing and 1 MiB pipes.
// maxpipes is bounded so that 2 fds per flow plus the pipes stay under a
// 20,000 fd hard limit at 9,000 flows.
const haproxyConf = `global
	maxconn %d
	maxpipes 256
	tune.pipesize 1048576
	log stderr format raw local0 emerg

defaults
	mode tcp
	option splice-auto
	timeout connect 5s
	timeout client 120s
	timeout server 120s

frontend in
	bind [::1]:%d v6only
	default_backend app

backend app
	server app %s
`

func startHAProxy(ctx context.Context, e *runEnv, c *Contender) (*Instance, error) {
	host, port, err := listenPair(c.Family)
	if err != nil {
		return nil, err
	}
	cfg, err := writeConf(e, "haproxy.cfg", fmt.Sprintf(haproxyConf, e.maxFlows+200, port, e.app))
	if err != nil {
		return nil, err
	}
	return startPeer(ctx, e, c, host, port, []string{c.Bin, "-db", "-f", cfg})
}

func start6tunnel(ctx context.Context, e *runEnv, c *Contender) (*Instance, error) {
	host, port, err := listenPair(c.Family)
	if err != nil {
		return nil, err
	}
	appHost, appPort, err := net.SplitHostPort(e.app)
	if err != nil {
		return nil, err
	}
	argv := []string{c.Bin, "-d", "-6", "-4", "-l", host, strconv.Itoa(port), appHost, appPort}
	return startPeer(ctx, e, c, host, port, argv)
}

func startSocat(ctx context.Context, e *runEnv, c *Contender) (*Instance, error) {
	host, port, err := listenPair(c.Family)
	if err != nil {
		return nil, err
	}
	argv := []string{c.Bin,
		fmt.Sprintf("TCP6-LISTEN:%d,bind=[%s],reuseaddr,fork,ipv6only=1,backlog=4096", port, host),
		"TCP4:" + e.app}
	return startPeer(ctx, e, c, host, port, argv)
}

// dantedConf is a no-auth SOCKS5 server on loopback for loopback. It has
// an external address of each family, so a name that resolves to ::1 first
// is connected as it is (0/0 matches both families and names).
const dantedConf = `logoutput: stderr
internal: 127.0.0.1 port = %d
external: 127.0.0.1
external: ::1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {
	from: 127.0.0.0/8 to: 0/0
	log: error
}
socks pass {
	from: 127.0.0.0/8 to: 0/0
	command: connect
	log: error
}
`

func startDanted(ctx context.Context, e *runEnv, c *Contender) (*Instance, error) {
	host, port, err := listenPair(c.Family)
	if err != nil {
		return nil, err
	}
	cfg, err := writeConf(e, "danted.conf", fmt.Sprintf(dantedConf, port))
	if err != nil {
		return nil, err
	}
	return startPeer(ctx, e, c, host, port, []string{c.Bin, "-f", cfg, "-p", e.dir + "/danted.pid"})
}

func startMicrosocks(ctx context.Context, e *runEnv, c *Contender) (*Instance, error) {
	host, port, err := listenPair(c.Family)
	if err != nil {
		return nil, err
	}
	argv := []string{c.Bin, "-i", host, "-p", strconv.Itoa(port)}
	return startPeer(ctx, e, c, host, port, argv)
}

// startSOCKS5Min runs go-socks5-min, the bench's own naive Go server.
func startSOCKS5Min(ctx context.Context, e *runEnv, c *Contender) (*Instance, error) {
	host, port, err := listenPair(c.Family)
	if err != nil {
		return nil, err
	}
	argv := []string{c.Bin, "socks5min", "-listen", net.JoinHostPort(host, strconv.Itoa(port))}
	return startPeer(ctx, e, c, host, port, argv)
}

// tinyproxyConf is an HTTP CONNECT proxy on loopback for loopback, in the
// foreground, logging only what is critical. Without ConnectPort lines
// CONNECT may reach any port. MaxClients is its cap on concurrent
// connections (a thread each).
const tinyproxyConf = `Port %d
Listen 127.0.0.1
Timeout 120
MaxClients %d
Allow 127.0.0.1
DisableViaHeader Yes
LogLevel Critical
`

func startTinyproxy(ctx context.Context, e *runEnv, c *Contender) (*Instance, error) {
	host, port, err := listenPair(c.Family)
	if err != nil {
		return nil, err
	}
	cfg, err := writeConf(e, "tinyproxy.conf", fmt.Sprintf(tinyproxyConf, port, e.maxFlows+200))
	if err != nil {
		return nil, err
	}
	return startPeer(ctx, e, c, host, port, []string{c.Bin, "-d", "-c", cfg})
}
