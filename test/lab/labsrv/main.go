// Command labsrv is the lab's HTTP server (test/lab/lab.sh starts one per server namespace and one
// as the pod's IPv4-only app). Every response names the server and the addresses the request
// arrived on, so a test can tell which path (native IPv6 or NAT64) a connection took.
//
//	GET /            "server=NAME local=IP:PORT remote=IP:PORT\n"
//	GET /gen?n=N     N bytes of the labgen stream; &rate=BYTES_PER_SECOND paces it
//	POST /echo       the request body, back as it came
//
// With -udp-listen it also echoes every UDP datagram back to its sender, unchanged (the SOCKS5
// UDP ASSOCIATE tests' destination).
//
// labsrv -gen N writes the stream to stdout instead, labsrv -sum N prints its SHA-256.
// With -tls-listen it serves the same answers over HTTPS, with the certificate that
// labsrv -mkcert DIR -names LIST made (a fresh test CA in DIR/ca.pem, lab.sh up runs it).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nat464/nat464-sidecar/test/lab/labgen"
)

func main() {
	name := flag.String("name", "labsrv", "server name reported in every response")
	listen := flag.String("listen", "", "comma-separated IP:PORT list to serve on")
	gen := flag.Int64("gen", -1, "write N bytes of the lab stream to stdout and exit")
	sum := flag.Int64("sum", -1, "print the SHA-256 of N bytes of the lab stream and exit")
	tlsListen := flag.String("tls-listen", "", "comma-separated IP:PORT list to serve HTTPS on")
	udpListen := flag.String("udp-listen", "", "comma-separated IP:PORT list to echo UDP datagrams on")
	tlsDir := flag.String("tls-dir", "", "directory of server.pem and server-key.pem (from -mkcert)")
	mk := flag.String("mkcert", "", "write a test CA and a server certificate into DIR and exit")
	names := flag.String("names", "", "with -mkcert: comma-separated names and IPs the certificate is for")
	flag.Parse()
	switch {
	case *mk != "":
		if err := mkcert(*mk, splitList(*names)); err != nil {
			log.Fatalf("labsrv: %v", err)
		}
	case *gen >= 0:
		if _, err := io.Copy(os.Stdout, labgen.Reader(*gen)); err != nil {
			log.Fatalf("labsrv: %v", err)
		}
	case *sum >= 0:
		fmt.Println(labgen.Sum(*sum))
	case *listen != "":
		if err := serve(*name, splitList(*listen), splitList(*tlsListen), *tlsDir, splitList(*udpListen)); err != nil {
			log.Fatalf("labsrv: %v", err)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
}

// serve listens on every address (IPv6 ones V6ONLY, as the lab wants single-family servers),
// plain HTTP on addrs and HTTPS on tlsAddrs, echoes UDP on udpAddrs, and serves until SIGTERM or
// SIGINT.
func serve(name string, addrs, tlsAddrs []string, tlsDir string, udpAddrs []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := &http.Server{Handler: handler(name), ReadHeaderTimeout: 10 * time.Second}
	var lns []net.Listener
	for _, a := range addrs {
		ln, err := listen(ctx, a)
		if err != nil {
			return err
		}
		lns = append(lns, ln)
	}
	if len(tlsAddrs) > 0 {
		cfg, err := tlsConfig(tlsDir)
		if err != nil {
			return err
		}
		for _, a := range tlsAddrs {
			ln, err := listen(ctx, a)
			if err != nil {
				return err
			}
			lns = append(lns, tls.NewListener(ln, cfg))
		}
	}
	var pcs []net.PacketConn
	for _, a := range udpAddrs {
		pc, err := listenUDP(ctx, a)
		if err != nil {
			return err
		}
		defer pc.Close()
		pcs = append(pcs, pc)
	}
	for _, pc := range pcs {
		go udpEcho(pc)
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	log.Printf("labsrv: %s serving on %s, HTTPS on %s, UDP echo on %s", name, strings.Join(addrs, " "),
		strings.Join(tlsAddrs, " "), strings.Join(udpAddrs, " "))
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	wg.Wait()
	return err
}

func listen(ctx context.Context, addr string) (net.Listener, error) {
	network, lc, err := listenConfig("tcp", addr)
	if err != nil {
		return nil, err
	}
	return lc.Listen(ctx, network, addr)
}

func listenUDP(ctx context.Context, addr string) (net.PacketConn, error) {
	network, lc, err := listenConfig("udp", addr)
	if err != nil {
		return nil, err
	}
	return lc.ListenPacket(ctx, network, addr)
}

// udpEcho sends every datagram back to its sender until pc is closed.
func udpEcho(pc net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		n, src, err := pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err == nil {
			_, _ = pc.WriteTo(buf[:n], src)
		}
	}
}

// listenConfig is the network (proto + 4 or 6) for addr, with IPv6 sockets V6ONLY.
func listenConfig(proto, addr string) (string, net.ListenConfig, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", net.ListenConfig{}, fmt.Errorf("listen %q: %w", addr, err)
	}
	network := proto + "4"
	if strings.Contains(host, ":") {
		network = proto + "6"
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if strings.HasSuffix(network, "6") {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return network, lc, nil
}

func handler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/gen", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "labsrv: want /gen?n=BYTES", http.StatusBadRequest)
			return
		}
		rate, _ := strconv.ParseInt(r.URL.Query().Get("rate"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Lab-Server", name)
		src := labgen.Reader(n)
		if rate > 0 {
			src = &paced{r: src, rate: rate, start: time.Now()}
		}
		_, _ = io.Copy(w, src)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		// The request body comes back as it came: a client checks bytes both ways.
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Lab-Server", name)
		if r.ContentLength >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
		}
		_, _ = io.Copy(w, r.Body)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Lab-Server", name)
		fmt.Fprintf(w, "server=%s local=%v remote=%s\n", name, local, r.RemoteAddr)
	})
	return mux
}

// paced hands out at most rate bytes per second of r (in 32 KiB steps), so a transfer lasts long
// enough for a test to act in the middle of it.
type paced struct {
	r     io.Reader
	rate  int64
	start time.Time
	sent  int64
}

func (p *paced) Read(b []byte) (int, error) {
	if len(b) > 32<<10 {
		b = b[:32<<10]
	}
	due := p.start.Add(time.Duration(float64(p.sent) / float64(p.rate) * float64(time.Second)))
	time.Sleep(time.Until(due))
	n, err := p.r.Read(b)
	p.sent += int64(n)
	return n, err
}
