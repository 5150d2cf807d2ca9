// Command nat464-sidecar bridges an IPv4-only application into an IPv6-only Kubernetes pod:
// inbound IPv6 connections are forwarded to the app on 127.0.0.1, and the app reaches the world
// through a local SOCKS5/SOCKS4a/HTTP CONNECT proxy that resolves, synthesizes NAT64 addresses and
// connects with Happy Eyeballs.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, sig))
}
