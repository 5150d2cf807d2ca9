//go:build e2e && linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// A runtime probe is one IPv4-only client, with no proxy setting, asked to reach v4only.example
// (A record only; the lab's DNS64 also gives it a synthesized AAAA) from the transparent pod.
type runtimeProbe struct {
	runtime, how string
	tool         string // the command it needs (test/lab/deps.sh installs it)
	args         func(t *testing.T) []string
	// reached says whether the output shows the server answered (default: exit status 0).
	reached func(out string, err error) bool
	// classify, if set, replaces the classification by exit status and egress flows: for a
	// client that tries every address in turn and says which it reached first.
	classify func(out string) string
	want     string // outcome class: egress, ipv6, fails
}

// Outcome classes, as the README's table words them.
var outcomeText = map[string]string{
	"egress": "works, through an egress address",
	"ipv6":   "works without the sidecar's DNS answer: it takes the DNS64 AAAA and connects over IPv6 (not an IPv4-only app)",
	"fails":  "fails",
}

// reachedDespiteProtocol is for clients that speak another protocol than the lab's HTTP
// server: they reached it when they complain about what it said, not about the connection.
func reachedDespiteProtocol(markers ...string) func(string, error) bool {
	return func(out string, _ error) bool {
		for _, m := range markers {
			if strings.Contains(out, m) {
				return true
			}
		}
		return false
	}
}

var probeBins struct {
	once                         sync.Once
	glibc, musl, goStatic, goCgo string
	err                          error
}

// buildProbes compiles test/lab/v4probe with glibc and musl, and v4app static and with cgo.
func buildProbes(t *testing.T) {
	t.Helper()
	probeBins.once.Do(func() {
		root, _ := filepath.Abs("../..")
		src := filepath.Join(root, "test", "lab", "v4probe", "v4probe.c")
		probeBins.glibc = filepath.Join(suite.dir, "v4probe-glibc")
		probeBins.musl = filepath.Join(suite.dir, "v4probe-musl")
		for cc, out := range map[string]string{"gcc": probeBins.glibc, "musl-gcc": probeBins.musl} {
			if b, err := exec.Command(cc, "-O1", "-Wall", "-o", out, src).CombinedOutput(); err != nil {
				probeBins.err = fmt.Errorf("%s v4probe.c: %v\n%s", cc, err, b)
				return
			}
		}
		probeBins.goStatic = v4appBin(t)
		probeBins.goCgo = filepath.Join(suite.dir, "v4app-cgo")
		cmd := exec.Command("go", "build", "-o", probeBins.goCgo, "./test/lab/v4app")
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=1")
		if b, err := cmd.CombinedOutput(); err != nil {
			probeBins.err = fmt.Errorf("go build (cgo) v4app: %v\n%s", err, b)
		}
	})
	if probeBins.err != nil {
		t.Fatal(probeBins.err)
	}
}

func runtimeProbes() []runtimeProbe {
	const host = "v4only.example"
	c := func(libc, mode, how, want string) runtimeProbe {
		return runtimeProbe{runtime: "C, " + libc, how: how, tool: map[string]string{"glibc": "gcc", "musl": "musl-gcc"}[libc], want: want,
			args: func(t *testing.T) []string {
				buildProbes(t)
				bin := probeBins.glibc
				if libc == "musl" {
					bin = probeBins.musl
				}
				return []string{bin, mode, host, "80"}
			}}
	}
	goProbe := func(how, net string, cgo bool, want string) runtimeProbe {
		rt := "Go, static (CGO_ENABLED=0, Go's resolver)"
		if cgo {
			rt = "Go, cgo resolver (GODEBUG=netdns=cgo)"
		}
		return runtimeProbe{runtime: rt, how: how, tool: "go", want: want, args: func(t *testing.T) []string {
			buildProbes(t)
			if cgo {
				return []string{"env", "GODEBUG=netdns=cgo", probeBins.goCgo, "-net", net, "http://" + host + "/"}
			}
			return []string{probeBins.goStatic, "-net", net, "http://" + host + "/"}
		}}
	}
	static := func(args ...string) func(*testing.T) []string { return func(*testing.T) []string { return args } }
	javaSrc := func() string {
		root, _ := filepath.Abs("../..")
		return filepath.Join(root, "test", "lab", "v4probe", "Probe.java")
	}
	return []runtimeProbe{
		c("glibc", "gai-inet", "`getaddrinfo(AF_INET)`, no flags", "egress"),
		c("glibc", "gai-inet-addrconfig", "`getaddrinfo(AF_INET, AI_ADDRCONFIG)`", "fails"),
		c("glibc", "gai-null", "`getaddrinfo` with NULL hints (glibc: `AI_ADDRCONFIG`), IPv4 results", "fails"),
		c("glibc", "gai-unspec", "`getaddrinfo(AF_UNSPEC)`, no flags, IPv4 results", "egress"),
		c("glibc", "ghbn", "`gethostbyname`", "egress"),
		c("musl", "gai-inet", "`getaddrinfo(AF_INET)`, no flags", "egress"),
		c("musl", "gai-inet-addrconfig", "`getaddrinfo(AF_INET, AI_ADDRCONFIG)`", "egress"),
		c("musl", "gai-null", "`getaddrinfo` with NULL hints, IPv4 results", "egress"),
		c("musl", "ghbn", "`gethostbyname`", "egress"),
		goProbe("`net.Dial(\"tcp4\")`", "tcp4", false, "egress"),
		goProbe("`net.Dial(\"tcp\")`", "tcp", false, "ipv6"),
		goProbe("`net.Dial(\"tcp4\")`", "tcp4", true, "egress"),
		{runtime: "Python 3", how: "`socket.getaddrinfo(AF_INET)`, connect", tool: "python3", want: "egress",
			args: static("python3", "-c", `import socket,sys
a = socket.getaddrinfo(sys.argv[1], 80, socket.AF_INET, socket.SOCK_STREAM)[0][4]
s = socket.create_connection(a, timeout=5); s.sendall(b"GET / HTTP/1.0\r\n\r\n"); print("peer=%s:%d" % a, s.recv(64))`, host)},
		{runtime: "Python 3", how: "`socket.create_connection((host, 80))` (both families)", tool: "python3", want: "ipv6",
			args: static("python3", "-c", `import socket,sys
s = socket.create_connection((sys.argv[1], 80), timeout=5); s.sendall(b"GET / HTTP/1.0\r\n\r\n"); print("peer=%s:%d" % s.getpeername()[:2], s.recv(64))`, host)},
		{runtime: "Java (JVM)", how: "`new Socket(host, 80)` with `-Djava.net.preferIPv4Stack=true`", tool: "java", want: "egress",
			args: func(*testing.T) []string {
				return []string{"java", "-Djava.net.preferIPv4Stack=true", javaSrc(), host, "80"}
			}},
		{runtime: "Java (JVM)", how: "`new Socket(host, 80)`, defaults (prefers IPv4 addresses)", tool: "java", want: "egress",
			args: func(*testing.T) []string { return []string{"java", javaSrc(), host, "80"} }},
		{runtime: "Node.js", how: "`net.connect({host, port: 80, family: 4})`", tool: "node", want: "egress",
			args: static("node", "-e", nodeConnect, host, "4")},
		{runtime: "Node.js", how: "`net.connect({host, port: 80})`, defaults", tool: "node", want: "ipv6",
			args: static("node", "-e", nodeConnect, host, "0")},
		{runtime: "curl", how: "`curl -4 http://host/`, no proxy", tool: "curl", want: "egress",
			args: static("curl", "-sS", "--max-time", "5", "-4", "http://"+host+"/")},
		{runtime: "curl", how: "`curl http://host/`, no proxy", tool: "curl", want: "ipv6",
			args: static("curl", "-sS", "--max-time", "5", "http://"+host+"/")},
		{runtime: "psql (libpq)", how: "`psql host=NAME port=80` (libpq tries every address in turn)", tool: "psql", want: "ipv6",
			args:     static("psql", "host="+host+" port=80 connect_timeout=2 sslmode=disable", "-c", "select 1"),
			classify: libpqFirst},
		{runtime: "redis-cli (hiredis)", how: "`redis-cli -h NAME -p 80 PING`", tool: "redis-cli", want: "egress",
			args:    static("redis-cli", "-h", host, "-p", "80", "PING"),
			reached: reachedDespiteProtocol("Protocol error", "HTTP/1.1 400", "Bad Request")},
	}
}

// nodeConnect connects with the given family (0: Node's default), sends a GET and prints the peer.
const nodeConnect = `const [host, fam] = process.argv.slice(1);
const opts = {host, port: 80}; if (fam !== "0") opts.family = Number(fam);
const s = require("net").connect(opts, () => { s.write("GET / HTTP/1.0\r\n\r\n"); });
s.setTimeout(5000, () => { console.error("timeout"); process.exit(1); });
s.on("data", d => { console.log("peer=" + s.remoteAddress + ":" + s.remotePort, d.toString().split("\r\n")[0]); process.exit(0); });
s.on("error", e => { console.error(e.message); process.exit(1); });`

// TestRuntimeTruthTable measures, runtime by runtime, what transparent egress does for an
// IPv4-only client in an IPv6-only pod, and holds the README's table to the measurement (set
// NAT464_UPDATE_README=1 to rewrite it).
func TestRuntimeTruthTable(t *testing.T) {
	transparentPod(t)
	s := startTransparent(t)
	egressFlows := func() float64 {
		_, body := s.probe("/metrics")
		return testnet.SumMetric(body, "nat464_loop_flows_total", `kind="egress"`)
	}
	var rows []string
	for _, p := range runtimeProbes() {
		if _, err := exec.LookPath(p.tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Errorf("%s: %s is missing (test/lab/deps.sh installs it); CI=true forbids skipping", p.runtime, p.tool)
			} else {
				t.Logf("%s: %s missing, row skipped", p.runtime, p.tool)
			}
			continue
		}
		before := egressFlows()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := run(ctx, env(t, "LAB_NS_POD"), append([]string{"setpriv", "--reuid=1000", "--regid=1000", "--clear-groups"}, p.args(t)...)...)
		cancel()
		combined := out
		if err != nil {
			combined += err.Error()
		}
		reached := err == nil
		if p.reached != nil {
			reached = p.reached(combined, err)
		}
		var deadline = time.Now().Add(2 * time.Second)
		viaEgress := false
		for time.Now().Before(deadline) { // the flow counts once its upstream connected
			if viaEgress = egressFlows() > before; viaEgress || !reached {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		got := "fails"
		switch {
		case p.classify != nil:
			got = p.classify(combined)
		case reached && viaEgress:
			got = "egress"
		case reached:
			got = "ipv6"
		}
		text := outcomeText[got]
		if got == "fails" {
			text += ": " + failureReason(combined)
		}
		t.Logf("%s, %s: %s (output %q)", p.runtime, p.how, got, strings.TrimSpace(combined))
		if got != p.want {
			t.Errorf("%s, %s: measured %q, the table says %q", p.runtime, p.how, got, p.want)
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s |", p.runtime, p.how, text))
	}
	table := "| runtime | how it resolves and connects | with transparent egress, no proxy setting |\n|---|---|---|\n" +
		strings.Join(rows, "\n") + "\n"
	checkReadmeTable(t, "runtime-table", table)
}

var libpqAttempt = regexp.MustCompile(`connection to server at "[^"]*" \(([^)]+)\), port \d+ failed: (.*)`)

// libpqFirst classifies psql by its first attempt. The lab's server speaks HTTP, so libpq's
// startup message is never answered: an attempt whose TCP connect succeeded fails with "timeout
// expired" (connect_timeout), one that did not with the connect error.
func libpqFirst(out string) string {
	m := libpqAttempt.FindStringSubmatch(out)
	if m == nil || !strings.HasPrefix(m[2], "timeout expired") {
		return "fails"
	}
	if strings.HasPrefix(m[1], "127.100.") {
		return "egress"
	}
	return "ipv6"
}

// failureReason is the last line of a failed probe's output, without the harness's prefix.
func failureReason(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if i := strings.Index(last, "exit status "); i >= 0 {
		if j := strings.Index(last[i:], ": "); j >= 0 {
			last = strings.TrimSpace(last[i+j+2:])
		}
	}
	last = strings.ReplaceAll(last, "|", "/")
	return "`" + last + "`"
}
