package deploy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// targetLabels are labels Prometheus adds to every series of a target (job, instance) or that
// Kubernetes service discovery commonly adds by relabelling; the binary does not export them.
var targetLabels = wordSet("job instance namespace pod container service endpoint node")

// exported is what one scrape of /metrics shows: every series name (histograms as their
// _bucket, _sum and _count, summaries as name, _sum and _count) with the label names its
// samples carry.
type exported map[string]map[string]bool

func parseExposition(body []byte) (exported, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out := exported{}
	add := func(name string, m *dto.Metric, extra ...string) {
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		for _, l := range m.GetLabel() {
			out[name][l.GetName()] = true
		}
		for _, l := range extra {
			out[name][l] = true
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				add(name+"_bucket", m, "le")
				add(name+"_sum", m)
				add(name+"_count", m)
			case dto.MetricType_SUMMARY:
				add(name, m, "quantile")
				add(name+"_sum", m)
				add(name+"_count", m)
			default:
				add(name, m)
			}
		}
	}
	return out, nil
}

// TestMonitoringMetricsExported runs the real sidecar on loopback, drives a little of every kind
// of traffic through it so that its labelled series exist, scrapes /metrics, and wants every
// series name each dashboard query and each alert expression reads to be exported, with every
// label they match on or group by.
func TestMonitoringMetricsExported(t *testing.T) {
	if runtime.GOOS != "linux" {
		cannotRun(t, "the process_* metrics, the splice engine and UDP pktinfo need Linux")
	}
	queries := monitoringQueries(t)
	got := scrapeDrivenSidecar(t)
	for _, where := range slices.Sorted(maps.Keys(queries)) {
		expr := queries[where]
		refs, err := parsePromQL(expr)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		known := maps.Clone(targetLabels)
		for _, m := range refs.metrics {
			labels, ok := got[m]
			if !ok {
				t.Errorf("%s reads %s, which the binary does not export (%q)", where, m, expr)
				continue
			}
			maps.Copy(known, labels)
			for _, l := range refs.matchers[m] {
				if !labels[l] && !targetLabels[l] {
					t.Errorf("%s matches %s on label %q, which it does not carry (it has %v)", where, m, l, slices.Sorted(maps.Keys(labels)))
				}
			}
		}
		for _, l := range refs.grouping {
			if !known[l] {
				t.Errorf("%s groups by %q, which none of %v carries", where, l, refs.metrics)
			}
		}
	}
	t.Logf("%d expressions checked against %d exported series names", len(queries), len(got))
}

// monitoringQueries returns every expression of the dashboard and the PrometheusRule.
func monitoringQueries(t *testing.T) map[string]string {
	t.Helper()
	out, err := loadDashboard(t).exprs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range loadPrometheusRule(t).alerts() {
		out["alert "+a.Alert] = a.Expr
	}
	return out
}

// scrapeDrivenSidecar builds and starts the sidecar with inbound TCP and UDP mappings, the proxy,
// the pod DNS server of transparent egress and RFC 7050 discovery, all on loopback; makes one
// inbound flow, one inbound connect failure, one proxied flow to a name, one refused proxied
// connect, one DNS question and one UDP datagram; and returns what /metrics then shows.
func scrapeDrivenSidecar(t *testing.T) exported {
	t.Helper()
	bin := buildSidecarBinary(t)
	dir := t.TempDir()
	echo4 := echoServer(t, "tcp4", "127.0.0.1:0")
	echo6 := echoServer(t, "tcp6", "[::1]:0")
	hosts := filepath.Join(dir, "hosts")
	resolv := filepath.Join(dir, "resolv.conf")
	writeFile(t, hosts, "::1 echo.test\n")
	writeFile(t, resolv, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
	var p sidecarPorts
	var admin string
	// A port found free may be taken by another process before the sidecar binds it: start
	// again on new ports then.
	for attempt := 1; ; attempt++ {
		p = pickPorts(t)
		args := []string{
			"--inbound", fmt.Sprintf("[::1]:%d=%s", p.inOK, echo4.String()),
			"--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:%d", p.inBad, p.closed4),
			"--inbound-udp", fmt.Sprintf("[::1]:%d=127.0.0.1:%d", p.inUDP, p.closedUDP),
			"--proxy-listen", fmt.Sprintf("127.0.0.1:%d", p.proxy),
			"--admin-listen", fmt.Sprintf("[::1]:%d", p.admin),
			"--hosts-file", hosts, "--resolv-conf", resolv,
			"--dns-listen", fmt.Sprintf("127.0.0.1:%d", p.dns),
			"--dns-upstream", fmt.Sprintf("127.0.0.1:%d", p.silentDNS),
			"--egress-ports", strconv.Itoa(p.egress),
			"--log-format", "text", "--drain-timeout", "1s", // the UDP session would hold a longer drain
		}
		var err error
		admin, err = startSidecar(t, bin, args, fmt.Sprintf("http://[::1]:%d", p.admin))
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "address already in use") || attempt == 3 {
			t.Fatalf("sidecar did not start: %v", err)
		}
		t.Logf("attempt %d: %v; again on other ports", attempt, err)
	}

	// An inbound flow, and an inbound connect the app (a closed port) refuses.
	if err := echoOnce(fmt.Sprintf("[::1]:%d", p.inOK)); err != nil {
		t.Errorf("inbound flow: %v", err)
	}
	drain(t, fmt.Sprintf("[::1]:%d", p.inBad))
	// A proxied flow to a name (hosts file: ::1), and one the destination refuses.
	if c, rep, err := socks5Connect(fmt.Sprintf("127.0.0.1:%d", p.proxy), "echo.test", echo6.Port); err != nil || rep != 0 {
		t.Errorf("SOCKS5 to echo.test:%d: reply %d, %v", echo6.Port, rep, err)
	} else {
		if err := echoOn(c); err != nil {
			t.Errorf("SOCKS5 flow: %v", err)
		}
		c.Close()
	}
	if c, rep, err := socks5Connect(fmt.Sprintf("127.0.0.1:%d", p.proxy), "echo.test", p.closed6); err != nil || rep == 0 {
		t.Errorf("SOCKS5 to a closed port: reply %d, %v; want a refusal", rep, err)
	} else {
		c.Close()
	}
	// A question to the pod's DNS server, and a datagram to a UDP target nobody listens on.
	if err := dnsQuestion(fmt.Sprintf("127.0.0.1:%d", p.dns), "echo.test."); err != nil {
		t.Errorf("DNS question: %v", err)
	}
	if c, err := net.Dial("udp6", fmt.Sprintf("[::1]:%d", p.inUDP)); err != nil {
		t.Error(err)
	} else {
		_, _ = c.Write([]byte("ping"))
		c.Close()
	}

	// Flow counters move when flows end, just after the client saw its data: scrape until the
	// series the traffic makes are there.
	want := []string{"nat464_loop_flows_total", "nat464_loop_upstream_connect_failures_total",
		"nat464_eyeballs_winners_total", "nat464_eyeballs_race_failures_total", "nat464_dns_queries_total",
		"nat464_nat64_discovery_total", "nat464_resolver_queries_total"}
	var got exported
	deadline := time.Now().Add(15 * time.Second)
	for {
		body, err := httpGet(admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if got, err = parseExposition(body); err != nil {
			t.Fatalf("/metrics: %v", err)
		}
		missing := slices.DeleteFunc(slices.Clone(want), func(m string) bool { return got[m] != nil })
		if len(missing) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Errorf("after the traffic, /metrics still lacks %v", missing)
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sidecarPorts are the loopback ports of one run: targets nothing listens on (closed4, closed6,
// closedUDP, silentDNS) and free ports for the sidecar's listeners.
type sidecarPorts struct {
	closed4, closed6, closedUDP, silentDNS        int
	inOK, inBad, inUDP, proxy, admin, dns, egress int
}

func pickPorts(t *testing.T) sidecarPorts {
	t.Helper()
	return sidecarPorts{
		closed4: freePort(t, "tcp4", "127.0.0.1:0"), closed6: freePort(t, "tcp6", "[::1]:0"),
		closedUDP: freePort(t, "udp4", "127.0.0.1:0"), silentDNS: freePort(t, "udp4", "127.0.0.1:0"),
		inOK: freePort(t, "tcp6", "[::1]:0"), inBad: freePort(t, "tcp6", "[::1]:0"), inUDP: freePort(t, "udp6", "[::1]:0"),
		proxy: freePort(t, "tcp4", "127.0.0.1:0"), admin: freePort(t, "tcp6", "[::1]:0"),
		dns: freeTCPAndUDPPort(t, "127.0.0.1"), egress: freePort(t, "tcp4", "127.0.0.1:0"),
	}
}

// startSidecar starts bin with args and waits for its /startupz at admin. The test's cleanup
// stops it (SIGTERM to its PID, SIGKILL if it hangs). If it exits during start-up, the error
// carries its log.
func startSidecar(t *testing.T, bin string, args []string, admin string) (string, error) {
	t.Helper()
	logs := &lockedBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sidecar log:\n%s", logs.String())
		}
	})
	if err := waitHTTP(admin+"/startupz", exited, 20*time.Second); err != nil {
		return "", fmt.Errorf("%w\n%s", err, logs.String())
	}
	return admin, nil
}

// lockedBuffer is a bytes.Buffer the sidecar's output goroutines and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freeTCPAndUDPPort returns a port free for both TCP and UDP on the loopback address ip.
func freeTCPAndUDPPort(t *testing.T, ip string) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		c, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		l.Close()
		if err == nil {
			c.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// buildSidecarBinary builds ./cmd/nat464-sidecar of the root module, as `make build` does.
func buildSidecarBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nat464-sidecar")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/nat464-sidecar")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/nat464-sidecar: %v\n%s", err, out)
	}
	return bin
}

// cannotRun skips a test this machine cannot run, but fails it under CI=true, where a skipped
// check would look like a passed one.
func cannotRun(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but this test cannot run: %s", reason)
	}
	t.Skip("SKIP: this test did NOT run: " + reason)
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// freePort binds a loopback addr ("127.0.0.1:0", "[::1]:0"), notes the port and closes it
// again: nothing listens there afterwards.
func freePort(t *testing.T, network, addr string) int {
	t.Helper()
	if strings.HasPrefix(network, "udp") {
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// echoServer serves TCP echo on addr until the test ends and returns its address.
func echoServer(t *testing.T, network, addr string) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr)
}

// echoOnce connects to addr and wants an echo of what it sends.
func echoOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return echoOn(c)
}

func echoOn(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return fmt.Errorf("echo %q", buf)
	}
	return nil
}

// drain connects to addr and reads until the sidecar closes or resets the connection.
func drain(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		// The splice engine may reset before connect(2) returns: the failure was counted.
		t.Logf("connect %s: %v", addr, err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	_, _ = io.Copy(io.Discard, c)
}

// socks5Connect sends a SOCKS5 CONNECT for host:port (no authentication) and returns the
// connection and the reply code.
func socks5Connect(proxy, host string, port int) (net.Conn, byte, error) {
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	fail := func(err error) (net.Conn, byte, error) { c.Close(); return nil, 0, err }
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return fail(err)
	}
	greet := make([]byte, 2)
	if _, err := io.ReadFull(c, greet); err != nil || greet[0] != 5 || greet[1] != 0 {
		return fail(fmt.Errorf("greeting %v: %v", greet, err))
	}
	req := append([]byte{5, 1, 0, 3, byte(len(host))}, host...)
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	if _, err := c.Write(req); err != nil {
		return fail(err)
	}
	head := make([]byte, 4)
	if _, err := io.ReadFull(c, head); err != nil {
		return fail(err)
	}
	n := map[byte]int{1: 4, 4: 16}[head[3]]
	if head[3] == 3 {
		l := make([]byte, 1)
		if _, err := io.ReadFull(c, l); err != nil {
			return fail(err)
		}
		n = int(l[0])
	}
	if _, err := io.ReadFull(c, make([]byte, n+2)); err != nil {
		return fail(err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, head[1], nil
}

// dnsQuestion asks server for name's A record over UDP and wants an answer to it.
func dnsQuestion(server, name string) error {
	q := []byte{0x4e, 0x36, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0} // ID, RD, one question
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		q = append(append(q, byte(len(l))), l...)
	}
	q = append(q, 0, 0, 1, 0, 1) // root, type A, class IN
	c, err := net.Dial("udp", server)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(q); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if n < 12 || !bytes.Equal(buf[:2], q[:2]) || buf[2]&0x80 == 0 {
		return fmt.Errorf("not an answer to the question: % x", buf[:n])
	}
	return nil
}

func httpGet(url string) ([]byte, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	return body, err
}

// waitHTTP polls url until it answers 200, the process exits, or timeout passes.
func waitHTTP(url string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := httpGet(url)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("the sidecar exited")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}
