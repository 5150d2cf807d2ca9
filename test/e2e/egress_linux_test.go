//go:build e2e && linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/test/lab/labgen"
)

// The transparent-egress tests turn the lab pod into what the transparent manifests make of a
// pod: its resolv.conf names the sidecar (dnsPolicy None, nameserver 127.0.0.1, the Kubernetes
// search list, ndots:5) and an unprivileged process may bind port 53 (the namespaced sysctl
// net.ipv4.ip_unprivileged_port_start). The apps run with no proxy setting at all.

var egressRange = netip.MustParsePrefix("127.100.0.0/16")

const transparentResolv = "# nat464 e2e: the transparent pod's resolv.conf (dnsPolicy None)\n" +
	"nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"

// transparentPod applies both pod settings until the test ends.
func transparentPod(t *testing.T) {
	t.Helper()
	requireBinary(t)
	ns := env(t, "LAB_NS_POD")
	path := filepath.Join("/etc/netns", ns, "resolv.conf")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(transparentResolv), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(path, old, 0o644); err != nil {
			t.Error(err)
		}
	})
	podSysctl(t, "net.ipv4.ip_unprivileged_port_start", "53")
}

// podSysctl sets a sysctl of the pod's namespace until the test ends.
func podSysctl(t *testing.T, key, value string) {
	t.Helper()
	ns := env(t, "LAB_NS_POD")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	old, err := run(ctx, ns, "sysctl", "-n", key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run(ctx, ns, "sysctl", "-w", key+"="+value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := run(ctx, ns, "sysctl", "-w", key+"="+strings.TrimSpace(old)); err != nil {
			t.Error(err)
		}
	})
}

// stateDir is a directory the sidecar (uid 65532) may write its --egress-state file in.
func stateDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp(suite.dir, "state-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// startTransparent runs the sidecar as the pod's DNS server, the cluster DNS (the lab's DNS64)
// as its upstream.
func startTransparent(t *testing.T, extra ...string) *sidecar {
	t.Helper()
	args := append([]string{"--dns-listen", "127.0.0.1:53", "--dns-upstream", "[" + env(t, "LAB_DNS6") + "]:53"}, extra...)
	return startSidecar(t, args...)
}

var v4app struct {
	once sync.Once
	path string
	err  error
}

// v4appBin builds test/lab/v4app (static, CGO_ENABLED=0) once.
func v4appBin(t *testing.T) string {
	t.Helper()
	v4app.once.Do(func() {
		root, _ := filepath.Abs("../..")
		v4app.path = filepath.Join(suite.dir, "v4app")
		v4app.err = goBuild(root, v4app.path, "./test/lab/v4app")
	})
	if v4app.err != nil {
		t.Fatal(v4app.err)
	}
	return v4app.path
}

// podRun runs a command in the pod as an unprivileged app would, with no proxy setting.
func podRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return run(ctx, env(t, "LAB_NS_POD"), append([]string{"setpriv", "--reuid=1000", "--regid=1000", "--clear-groups"}, args...)...)
}

var peerRE = regexp.MustCompile(`peer=(\S+)`)

// peerOf returns the address an app output line says it connected to.
func peerOf(t *testing.T, out string) netip.AddrPort {
	t.Helper()
	m := peerRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no peer in %q", out)
	}
	ap, err := netip.ParseAddrPort(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// pyEcho is an IPv4-only Python client: getaddrinfo(AF_INET), connect, POST n random bytes to
// /echo and check they come back.
const pyEcho = `import hashlib, os, socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
addr = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
s = socket.create_connection(addr, timeout=10)
body = os.urandom(n)
s.sendall(b"POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (host.encode(), n) + body)
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
head, _, got = data.partition(b"\r\n\r\n")
print("peer=%s:%d echo=%s" % (addr[0], addr[1], "ok" if got == body else "bad %d bytes" % len(got)))
`

// TestTransparentEgress: programs with no proxy setting reach IPv4-only, IPv6-only and
// dual-stack names and the cluster's short names through the sidecar's egress addresses.
func TestTransparentEgress(t *testing.T) {
	transparentPod(t)
	startTransparent(t, "--egress-state", filepath.Join(stateDir(t), "egress.json"))
	pod := "[" + env(t, "LAB_POD6") + "]:"
	for _, tc := range []struct {
		host, server, from string
	}{
		{"v4only.example", "v4srv", v4From},
		{"v6only.example", "v6srv", pod},
		{"dual.example", "ds", pod},
		{"web", "v6srv", pod},
		{"legacy", "v4srv", v4From},
	} {
		t.Run("curl -4 "+tc.host, func(t *testing.T) {
			body, _, err := curl(t, env(t, "LAB_NS_POD"), "-4", "http://"+tc.host+"/")
			if err != nil {
				t.Fatalf("curl -4 http://%s/ without a proxy: %v (%q)", tc.host, err, body)
			}
			parseWhoami(t, body).check(t, tc.server, "", tc.from)
		})
		t.Run("static Go "+tc.host, func(t *testing.T) {
			const n = 1 << 20
			out, err := podRun(t, v4appBin(t), "http://"+tc.host+fmt.Sprintf("/gen?n=%d", n))
			if err != nil {
				t.Fatalf("v4app: %v", err)
			}
			if want := fmt.Sprintf("sha256=%s bytes=%d", labgen.Sum(n), n); !strings.HasPrefix(out, want) {
				t.Errorf("v4app got %q, want %q", out, want)
			}
			if p := peerOf(t, out); !egressRange.Contains(p.Addr()) || p.Port() != 80 {
				t.Errorf("v4app connected to %s, not an egress address", p)
			}
		})
		t.Run("python AF_INET "+tc.host, func(t *testing.T) {
			out, err := podRun(t, "python3", "-c", pyEcho, tc.host, "80", "300000")
			if err != nil {
				t.Fatalf("python: %v", err)
			}
			if !strings.Contains(out, "echo=ok") || !egressRange.Contains(peerOf(t, out).Addr()) {
				t.Errorf("python: %q", out)
			}
		})
	}
}

// digOut runs dig in the pod against the sidecar.
func digOut(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := run(ctx, env(t, "LAB_NS_POD"), append([]string{"dig", "@127.0.0.1", "+time=3", "+tries=1"}, args...)...)
	if err != nil {
		t.Fatalf("dig %v: %v", args, err)
	}
	return out
}

// TestTransparentDNS: what dig sees of the pod's DNS server.
func TestTransparentDNS(t *testing.T) {
	transparentPod(t)
	s := startTransparent(t)
	a := strings.TrimSpace(digOut(t, "+short", "v4only.example", "A"))
	addr, err := netip.ParseAddr(a)
	if err != nil || !egressRange.Contains(addr) {
		t.Fatalf("A v4only.example = %q, want an egress address", a)
	}
	if again := strings.TrimSpace(digOut(t, "+short", "v4only.example", "A")); again != a {
		t.Errorf("A again = %q, was %q", again, a)
	}
	if aaaa := strings.TrimSpace(digOut(t, "+short", "v4only.example", "AAAA")); !strings.HasPrefix(aaaa, "64:ff9b::") {
		t.Errorf("AAAA v4only.example = %q, want the upstream's DNS64 answer", aaaa)
	}
	if ptr := strings.TrimSpace(digOut(t, "+short", "-x", a)); ptr != "v4only.example." {
		t.Errorf("PTR %s = %q, want v4only.example.", a, ptr)
	}
	nx := digOut(t, "nowhere.example", "A")
	if !strings.Contains(nx, "status: NXDOMAIN") || !regexp.MustCompile(`(?m)^\.\s+\d+\s+IN\s+SOA`).MatchString(nx) {
		t.Errorf("a name that does not exist:\n%s\nwant NXDOMAIN with the zone's SOA", nx)
	}
	big := digOut(t, "big.example", "TXT")
	if !strings.Contains(big, "Truncated, retrying in TCP mode") || !strings.Contains(big, "ANSWER: 24") {
		t.Errorf("a large answer:\n%s\nwant TC over UDP, then all 24 records over TCP", big)
	}
	if code, body := s.probe("/metrics"); code != 200 || !strings.Contains(body, `nat464_dns_queries_total{answer="egress",type="A"} 2`) {
		t.Errorf("/metrics does not count the two egress answers:\n%s", grepLines(body, "nat464_dns_"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestTransparentBounds: the listeners are on egress addresses only (nothing an outside client
// can reach), a port not in --egress-ports is refused, a port the app holds stays the app's, and
// Happy Eyeballs still moves on within a second when the first address is blackholed.
func TestTransparentBounds(t *testing.T) {
	transparentPod(t)
	// The app listens on 0.0.0.0:8088 before the sidecar starts.
	ctx, cancel := context.WithCancel(context.Background())
	app := exec.CommandContext(ctx, "ip", "netns", "exec", env(t, "LAB_NS_POD"), "python3", "-m", "http.server", "8088", "--bind", "0.0.0.0")
	app.Env = cleanEnv()
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); app.Wait() })
	waitPodListen(t, "0.0.0.0:8088")
	s := startTransparent(t, "--egress-ports", "80,8088")

	out, err := podRun(t, v4appBin(t), "http://v6only.example/")
	if err != nil {
		t.Fatal(err)
	}
	a := peerOf(t, out).Addr()
	ls, err := run(context.Background(), env(t, "LAB_NS_POD"), "ss", "-Htln")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(ls), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasSuffix(f[3], ":80") {
			continue
		}
		ap, err := netip.ParseAddrPort(f[3])
		if err != nil || !egressRange.Contains(ap.Addr()) {
			t.Errorf("a listener on port 80 outside the egress range: %s", line)
		}
	}
	if body, _, err := curl(t, env(t, "LAB_NS_CLIENT"), "http://["+env(t, "LAB_POD6")+"]:80/"); err == nil {
		t.Errorf("the outside client reached port 80 of the pod: %q", body)
	}
	if out, err := podRun(t, "python3", "-c", "import socket,sys; socket.create_connection((sys.argv[1], 8081), timeout=3)", a.String()); err == nil || !strings.Contains(err.Error(), "ConnectionRefused") {
		t.Errorf("a port not in --egress-ports: %q %v, want connection refused", out, err)
	}
	// 8088 is the app's: its http.server answers on the egress address, and the conflict is counted.
	if out, err := podRun(t, "python3", "-c", "import urllib.request,sys; print(urllib.request.urlopen('http://%s:8088/' % sys.argv[1], timeout=5).status)", a.String()); err != nil || strings.TrimSpace(out) != "200" {
		t.Errorf("the app's own 0.0.0.0:8088 through an egress address: %q %v", out, err)
	}
	if _, body := s.probe("/metrics"); !strings.Contains(body, `nat464_egress_port_conflicts_total{port="8088",protocol="tcp"} 1`) {
		t.Errorf("the held port is not counted once:\n%s", grepLines(body, "nat464_egress_"))
	}
	if !strings.Contains(s.logs.String(), "egress port is held by another socket") {
		t.Error("no warning about the held port")
	}

	blackhole(t, env(t, "LAB_DS6"))
	body, took, err := curl(t, env(t, "LAB_NS_POD"), "-4", "http://dual.example/")
	if err != nil {
		t.Fatalf("dual.example with its AAAA blackholed: %v", err)
	}
	parseWhoami(t, body).check(t, "ds", "", v4From)
	if took > time.Second {
		t.Errorf("Happy Eyeballs behind an egress address took %v with the first address blackholed, want < 1s", took)
	}
}

func waitPodListen(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := run(context.Background(), env(t, "LAB_NS_POD"), "ss", "-Htln")
		if strings.Contains(out, addr) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s in the pod", addr)
}

// TestTransparentRestart: with --egress-state, an address handed out before a restart still
// reaches its name afterwards, without the app asking again.
func TestTransparentRestart(t *testing.T) {
	transparentPod(t)
	state := filepath.Join(stateDir(t), "egress.json")
	s := startTransparent(t, "--egress-state", state)
	out, err := podRun(t, v4appBin(t), "http://v6only.example/")
	if err != nil {
		t.Fatal(err)
	}
	a := peerOf(t, out).Addr()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	startTransparent(t, "--egress-state", state)
	body, _, err := curl(t, env(t, "LAB_NS_POD"), "-H", "Host: v6only.example", "http://"+a.String()+"/")
	if err != nil {
		t.Fatalf("the old address %s after a restart: %v", a, err)
	}
	parseWhoami(t, body).check(t, "v6srv", "", "["+env(t, "LAB_POD6")+"]:")
}

// TestTransparentStatic: a hosts-file name in the egress range (Kubernetes hostAliases) reaches
// its name with no DNS server and the pod's usual resolv.conf. (Port 80 still needs the
// unprivileged-port sysctl, as every egress port below 1024 does.)
func TestTransparentStatic(t *testing.T) {
	requireBinary(t)
	podSysctl(t, "net.ipv4.ip_unprivileged_port_start", "53")
	// The lab's kubelet-style hosts file, with a hostAliases entry appended as kubelet does.
	path := env(t, "LAB_HOSTS")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	alias := "\n# Entries added by HostAliases.\n127.100.200.1\tv6only.example\n"
	if err := os.WriteFile(path, append(old[:len(old):len(old)], alias...), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(path, old, 0o644); err != nil {
			t.Error(err)
		}
	})
	startSidecar(t)
	body, _, err := curl(t, env(t, "LAB_NS_POD"), "-4", "http://v6only.example/")
	if err != nil {
		t.Fatalf("curl -4 a hosts-file egress name: %v", err)
	}
	parseWhoami(t, body).check(t, "v6srv", "", "["+env(t, "LAB_POD6")+"]:")
}

// TestTransparentRedis: redis-cli, with no proxy setting, stores and reads back a value on a
// Redis server on the IPv4-only host, through the sidecar's egress address for v4only.example
// and NAT64; the bytes come back exactly.
func TestTransparentRedis(t *testing.T) {
	transparentPod(t)
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is missing (test/lab/deps.sh installs it)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := exec.CommandContext(ctx, "ip", "netns", "exec", env(t, "LAB_NS_V4SRV"), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"redis-server", "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", "/tmp")
	srv.Env = cleanEnv()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); srv.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := run(context.Background(), env(t, "LAB_NS_V4SRV"), "ss", "-Htln")
		if strings.Contains(out, ":6379") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not start listening")
		}
		time.Sleep(50 * time.Millisecond)
	}
	startTransparent(t, "--egress-ports", "80,6379")
	value := strings.Repeat(fmt.Sprintf("%x", labgen.Sum(4096)), 64) // 8 KiB of text
	if out, err := podRun(t, "redis-cli", "-h", "v4only.example", "-p", "6379", "SET", "egress", value); err != nil || strings.TrimSpace(out) != "OK" {
		t.Fatalf("redis-cli SET: %q %v", out, err)
	}
	out, err := podRun(t, "redis-cli", "-h", "v4only.example", "-p", "6379", "GET", "egress")
	if err != nil || strings.TrimSpace(out) != value {
		t.Fatalf("redis-cli GET: %d bytes, %v; want the %d bytes stored", len(strings.TrimSpace(out)), err, len(value))
	}
	if out, err := podRun(t, "redis-cli", "-h", "v4only.example", "-p", "6379", "CLIENT", "LIST"); err != nil || !strings.Contains(out, "addr=192.0.2.") {
		t.Errorf("the server does not see the client through NAT64: %q %v", out, err)
	}
}
