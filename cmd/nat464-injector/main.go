// Command nat464-injector is a mutating admission webhook that adds nat464-sidecar to pods
// annotated nat464.io/inject: "true" (package inject has the rules). It serves
// AdmissionReview v1 over HTTPS on /mutate, and /healthz for its probes; it never calls the API
// server, so it needs no RBAC.
//
//	nat464-injector --tls-cert-file tls.crt --tls-key-file tls.key [--listen [::]:8443]
//	    [--image IMAGE] [--dns-upstream ADDR] [--cluster-domain cluster.local] [--on-error deny|allow]
//
// The certificate and key are re-read when they change (a cert-manager renewal rewrites the
// mounted Secret), checked at most every 10 s. --on-error decides what a pod with an annotation
// the sidecar cannot take gets: denied with the reason (the default: fail closed), or admitted
// without the sidecar and with a warning (fail open). What happens when the webhook cannot be
// reached at all is the MutatingWebhookConfiguration's failurePolicy.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/inject"
)

var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// run is main without globals; it returns the exit code (2: bad flags).
func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("nat464-injector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "[::]:8443", "HTTPS listen address")
	certFile := fs.String("tls-cert-file", "", "serving certificate (PEM), e.g. a cert-manager Secret's tls.crt")
	keyFile := fs.String("tls-key-file", "", "its key (PEM)")
	image := fs.String("image", inject.DefaultImage, "sidecar image")
	dnsUpstream := fs.String("dns-upstream", "", "cluster DNS Service address for transparent egress pods, e.g. [fd00:10:96::a]:53")
	domain := fs.String("cluster-domain", "cluster.local", "cluster domain for transparent egress pods' search list")
	onError := fs.String("on-error", "deny", "a pod whose annotations the sidecar cannot take: deny (fail closed) or allow without the sidecar (fail open)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	lg := slog.New(slog.NewJSONHandler(stderr, nil))
	if *certFile == "" || *keyFile == "" || (*onError != "deny" && *onError != "allow") || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "nat464-injector: --tls-cert-file and --tls-key-file are required; --on-error is deny or allow")
		return 2
	}
	certs, err := newCertReloader(*certFile, *keyFile)
	if err != nil {
		fmt.Fprintln(stderr, "nat464-injector:", err)
		return 2
	}
	h := &handler{cfg: inject.Config{Image: *image, DNSUpstream: *dnsUpstream, ClusterDomain: *domain, Validate: validate},
		failOpen: *onError == "allow", log: lg}
	mux := http.NewServeMux()
	mux.Handle("POST /mutate", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "nat464-injector:", err)
		return 1
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 90 * time.Second, MaxHeaderBytes: 16 << 10,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get},
		ErrorLog:  slog.NewLogLogger(lg.Handler(), slog.LevelWarn)}
	lg.Info("nat464-injector listening", "addr", ln.Addr().String(), "version", version, "image", *image, "on_error", *onError)
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-done:
		lg.Error("serving failed", "err", err)
		return 1
	case s := <-sig:
		lg.Info("signal received: stopping", "signal", s.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return 1
	}
	return 0
}

// validate runs the sidecar's own flag parser over the arguments the pod would get; the
// environment is empty, as the injected container's is.
func validate(args []string) error {
	_, err := config.Parse(args, func(string) string { return "" }, io.Discard)
	return err
}
