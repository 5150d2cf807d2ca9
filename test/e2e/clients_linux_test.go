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
)

// The proxy matrix: real clients in the IPv6-only pod, each configured through its own documented
// proxy setting, against the sidecar's default proxy listeners, with every other way out of the
// pod blocked. Rows are in clientrows_linux_test.go.

// A dest is one destination of the matrix and what its labsrv answer must say.
type dest struct {
	host   string // in the URL
	server string // labsrv -name
	ip     string // the server's address as labsrv prints it, without the port
	from   string // prefix of the peer address the server sees
}

func matrixDests(t *testing.T) []dest {
	v4, v6 := env(t, "LAB_V4SRV"), "["+env(t, "LAB_V6SRV")+"]"
	return []dest{
		{"v4only.example", "v4srv", v4, v4From},
		{"v6only.example", "v6srv", v6, "[" + env(t, "LAB_POD6") + "]:"},
		{v4, "v4srv", v4, v4From},
	}
}

var schemes = []string{"http", "https"}

// cellResult is one measured cell.
type cellResult struct {
	ok     bool
	reason string // why it cannot work ("" if it should), from the row
	out    string // the client's output and error, for the log
	err    string // why the answer was wrong, if it ran and was
	note   string // err for the table
	na     string // not applicable: no measurement
	took   time.Duration
}

// clientEnv is what every row's command builder may use: files prepared once per run.
type clientEnv struct {
	ca, truststore, javaDir, proxyget, chains, out string
	// appEnv is the manifests' app environment (deploy/testdata/app-env.golden), NAME=VALUE.
	appEnv []string
}

// matrixUID is the pod user every client runs as: not root, and not the sidecar's uid 65532,
// which is the only one allowed out of the pod.
const matrixUID = "1000"

// TestClientMatrix runs every client row against every destination over http and https, checks
// which server answered, and holds the README's client table to the measurement (set
// NAT464_UPDATE_README=1 to rewrite it).
func TestClientMatrix(t *testing.T) {
	requireBinary(t)
	// The default proxy listeners: no --proxy-listen.
	startSidecarEnv(t, nil, "--inbound", inboundPort+"="+env(t, "LAB_APP"), "--drain-timeout", "15s")
	blockPodEgress(t)
	t.Run("block", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, url := range []string{"http://v6only.example/", "http://[64:ff9b::" + env(t, "LAB_V4SRV") + "]/"} {
			if out, _, err := podClient(ctx, nil, "curl", "-sS", "--max-time", "5", url); err == nil {
				t.Errorf("curl %s without a proxy got out of the pod: %q", url, out)
			}
		}
	})
	ce := prepareClients(t)
	rows := clientRows(ce)
	dests := matrixDests(t)
	results := make([][]cellResult, len(rows))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	start := time.Now()
	for i, r := range rows {
		results[i] = make([]cellResult, len(schemes)*len(dests))
		if missing := r.missingTool(); missing != "" {
			if os.Getenv("CI") == "true" {
				t.Errorf("%s %s: %s is missing (test/lab/deps.sh installs it); CI=true forbids skipping", r.client, r.setting, missing)
			} else {
				t.Logf("%s %s: %s missing, row skipped", r.client, r.setting, missing)
			}
			results[i] = nil
			continue
		}
		for si, scheme := range schemes {
			for di, d := range dests {
				c := &results[i][si*len(dests)+di]
				if na := r.na[scheme]; na != "" {
					c.na = na
					continue
				}
				c.reason = r.expectFail(scheme, d.host)
				wg.Add(1)
				go func() {
					defer wg.Done()
					sem <- struct{}{}
					defer func() { <-sem }()
					*c = measure(r, scheme, d, *c)
				}()
			}
		}
	}
	wg.Wait()
	t.Logf("%d rows measured in %v", len(rows), time.Since(start).Round(time.Millisecond))
	for i, r := range rows {
		if results[i] == nil {
			continue
		}
		t.Run(r.client+" "+r.setting, func(t *testing.T) {
			for j, c := range results[i] {
				where := schemes[j/len(dests)] + "://" + dests[j%len(dests)].host
				if c.took > 5*time.Second {
					t.Logf("%s took %v", where, c.took.Round(time.Millisecond))
				}
				switch {
				case c.na != "":
				case c.ok && c.reason != "":
					t.Errorf("%s works, but the row says it fails (%s)", where, c.reason)
				case !c.ok && c.reason == "":
					t.Errorf("%s fails: %s\n%s", where, c.err, c.out)
				}
			}
		})
	}
	checkClientTable(t, clientTable(rows, results))
}

// measure runs one cell and checks its answer.
func measure(r clientRow, scheme string, d dest, c cellResult) cellResult {
	url := scheme + "://" + d.host + "/"
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	vars, args := r.cmd(scheme, d.host, url)
	began := time.Now()
	out, stderr, err := podClient(ctx, vars, args...)
	c.took = time.Since(began)
	c.out = fmt.Sprintf("$ %s %q\n%s%s", strings.Join(vars, " "), args, out, stderr)
	if err != nil {
		c.err, c.note = fmt.Sprintf("the client failed (%v)", err), failureNote(out, stderr, err)
		return c
	}
	port := map[string]string{"http": "80", "https": "443"}[scheme]
	m := looseWhoamiRE.FindStringSubmatch(out)
	switch {
	case m == nil:
		c.err, c.note = "no labsrv answer in the output", failureNote(out, stderr, nil)
	case m[1] != d.server || m[2] != d.ip+":"+port || !strings.HasPrefix(m[3], d.from):
		c.note = "fails: the wrong server answered"
		c.err = fmt.Sprintf("answered by server=%s local=%s remote=%s; want server=%s local=%s:%s remote=%s*", m[1], m[2], m[3], d.server, d.ip, port, d.from)
	default:
		c.ok = true
	}
	return c
}

// looseWhoamiRE finds a labsrv "/" answer inside a client's output (nc and the raw Java socket
// print the whole HTTP response).
var looseWhoamiRE = regexp.MustCompile(`(?m)^server=(\S+) local=(\S+) remote=(\S+)\r?$`)

// podClient runs args in the pod as matrixUID with exactly vars (and PATH, LC_ALL, HOME) in its
// environment, and returns its stdout and stderr.
func podClient(ctx context.Context, vars []string, args ...string) (string, string, error) {
	full := []string{"netns", "exec", suite.env["LAB_NS_POD"],
		"setpriv", "--reuid=" + matrixUID, "--regid=" + matrixUID, "--clear-groups",
		"env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "HOME=/nonexistent"}
	cmd := exec.CommandContext(ctx, "ip", append(append(full, vars...), args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// failureNote says in a few words why a cell failed, for the table.
func failureNote(stdout, stderr string, err error) string {
	all := stdout + stderr
	switch {
	case strings.Contains(all, "405") || strings.Contains(all, "Method Not Allowed"):
		return "fails: the proxy answers `405 Method Not Allowed` to an absolute-form `GET`"
	case strings.Contains(all, "ECONNREFUSED") || strings.Contains(all, "Connection refused") || strings.Contains(all, "Errno 111"):
		return "fails: `connection refused` by the proxy address"
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if last == "" && err != nil {
		last = err.Error()
	}
	if len(last) > 100 {
		last = last[:100] + "..."
	}
	return "fails: `" + strings.ReplaceAll(last, "|", "/") + "`"
}

// blockPodEgress makes the sidecar the pod's only way out until the test ends: in the pod's
// OUTPUT chains, loopback, ICMPv6 (neighbour discovery), replies, DNS to the pod's resolver and
// the sidecar's uid are accepted and everything else is rejected, so a client that bypasses the
// proxy fails at once instead of passing by accident.
func blockPodEgress(t *testing.T) {
	t.Helper()
	const chain = "N464-CLIENTS"
	dns := env(t, "LAB_DNS6")
	rules := map[string][][]string{
		"ip6tables": {
			{"-o", "lo"}, {"-p", "ipv6-icmp"},
			{"-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED"},
			{"-m", "owner", "--uid-owner", "65532"},
			{"-d", dns, "-p", "udp", "--dport", "53"}, {"-d", dns, "-p", "tcp", "--dport", "53"},
		},
		"iptables": {
			{"-o", "lo"},
			{"-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED"},
			{"-m", "owner", "--uid-owner", "65532"},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod := env(t, "LAB_NS_POD")
	ipt := func(ctx context.Context, tool string, args ...string) error {
		_, err := run(ctx, pod, append([]string{tool, "-w"}, args...)...)
		return err
	}
	for tool, accepts := range rules {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for ipt(ctx, tool, "-D", "OUTPUT", "-j", chain) == nil {
			}
			_ = ipt(ctx, tool, "-F", chain)
			if err := ipt(ctx, tool, "-X", chain); err != nil {
				t.Errorf("%s: remove %s: %v", tool, chain, err)
			}
		})
		if err := ipt(ctx, tool, "-N", chain); err != nil {
			t.Fatal(err)
		}
		for _, a := range accepts {
			if err := ipt(ctx, tool, append(append([]string{"-A", chain}, a...), "-j", "ACCEPT")...); err != nil {
				t.Fatal(err)
			}
		}
		if err := ipt(ctx, tool, "-A", chain, "-j", "REJECT"); err != nil {
			t.Fatal(err)
		}
		if err := ipt(ctx, tool, "-I", "OUTPUT", "-j", chain); err != nil {
			t.Fatal(err)
		}
	}
}

// prepareClients builds and writes, once, what the rows run: the Go client, the Java class, a
// PKCS12 truststore with the lab CA, a proxychains4 configuration and a directory the clients
// may write into.
func prepareClients(t *testing.T) clientEnv {
	t.Helper()
	root, _ := filepath.Abs("../..")
	ce := clientEnv{
		ca:         env(t, "LAB_CA_PEM"),
		truststore: filepath.Join(suite.dir, "lab-ca.p12"),
		javaDir:    filepath.Join(suite.dir, "java"),
		proxyget:   filepath.Join(suite.dir, "proxyget"),
		out:        filepath.Join(suite.dir, "client-out"),
	}
	if err := goBuild(root, ce.proxyget, "./test/lab/proxyget"); err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(filepath.Join(root, "deploy", "testdata", "app-env.golden"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(golden), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			ce.appEnv = append(ce.appEnv, line)
		}
	}
	if len(ce.appEnv) == 0 {
		t.Fatal("deploy/testdata/app-env.golden holds no variable")
	}
	if err := os.MkdirAll(ce.out, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ce.out, 0o1777); err != nil {
		t.Fatal(err)
	}
	ce.chains = writeFile(t, "proxychains.conf", "strict_chain\nproxy_dns\nremote_dns_subnet 224\n"+
		"tcp_read_time_out 15000\ntcp_connect_time_out 8000\n[ProxyList]\nsocks5 127.0.0.1 1080\n")
	if _, err := exec.LookPath("javac"); err == nil {
		src := filepath.Join(root, "test", "lab", "proxyget", "ProxyGet.java")
		if b, err := exec.Command("javac", "-d", ce.javaDir, src).CombinedOutput(); err != nil {
			t.Fatalf("javac ProxyGet.java: %v\n%s", err, b)
		}
		os.Remove(ce.truststore)
		if b, err := exec.Command("keytool", "-importcert", "-noprompt", "-alias", "nat464-lab-ca", "-file", ce.ca,
			"-keystore", ce.truststore, "-storetype", "PKCS12", "-storepass", "changeit").CombinedOutput(); err != nil {
			t.Fatalf("keytool: %v\n%s", err, b)
		}
		if err := readableTree(ce.javaDir); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(ce.truststore, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return ce
}

// readableTree makes dir's directories 0755 and files 0644, for the pod's unprivileged clients.
func readableTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
}
