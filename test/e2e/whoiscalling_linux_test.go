//go:build e2e && linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/clients"
	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// nginxPort is where the PROXY protocol-reading nginx listens in the pod.
const nginxPort = "8091"

// startNginx runs nginx in the pod on 127.0.0.1:8091 with proxy_protocol on its listener: it
// answers every request with the client address the header gave it, and logs it. It returns
// the access log's path; the test's cleanup stops it.
func startNginx(t *testing.T) string {
	t.Helper()
	bin := testnet.RequireTool(t, "nginx")
	dir, err := os.MkdirTemp(suite.dir, "nginx-")
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`master_process off;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
	log_format pp '$proxy_protocol_addr $proxy_protocol_port $remote_addr "$request"';
	access_log %[1]s/access.log pp;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 127.0.0.1:%[2]s proxy_protocol;
		location / {
			default_type text/plain;
			return 200 "proxy_protocol_addr=$proxy_protocol_addr port=$proxy_protocol_port remote=$remote_addr\n";
		}
	}
}
`, dir, nginxPort)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", env(t, "LAB_NS_POD"), bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
	cmd.Env = cleanEnv()
	out := &testnet.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill() // our own child, by PID
		<-done
		if t.Failed() {
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", out, errLog)
		}
	})
	waitPodListen(t, "127.0.0.1:"+nginxPort)
	return filepath.Join(dir, "access.log")
}

var ppRE = regexp.MustCompile(`^proxy_protocol_addr=(\S*) port=(\S*) remote=(\S+)\n$`)

// TestInboundProxyProtocolNginx: nginx with proxy_protocol on its listener, behind the sidecar,
// logs the outside client's real IPv6 address, with a v1 and with a v2 header, on both engines;
// the plain mapping beside them still shows the app 127.0.0.1 and no header.
func TestInboundProxyProtocolNginx(t *testing.T) {
	requireLab(t)
	accessLog := startNginx(t)
	client, client6, pod6 := env(t, "LAB_NS_CLIENT"), env(t, "LAB_CLIENT6"), env(t, "LAB_POD6")
	for _, eng := range []string{"splice", "goroutine"} {
		t.Run(eng, func(t *testing.T) {
			startSidecar(t, "--engine", eng,
				"--inbound", "8081=127.0.0.1:"+nginxPort, "--inbound-proxy-protocol", "8081=v1",
				"--inbound", "8082=127.0.0.1:"+nginxPort, "--inbound-proxy-protocol", "8082=v2")
			for _, port := range []string{"8081", "8082"} {
				body, _, err := curl(t, client, "--fail", fmt.Sprintf("http://[%s]:%s/%s-%s", pod6, port, eng, port))
				if err != nil {
					t.Fatalf("port %s: %v (%q)", port, err, body)
				}
				m := ppRE.FindStringSubmatch(body)
				if m == nil || m[1] != client6 || m[3] != "127.0.0.1" {
					t.Errorf("port %s: nginx answered %q, want proxy_protocol_addr=%s from 127.0.0.1", port, body, client6)
				}
				logged, _ := os.ReadFile(accessLog)
				if want := fmt.Sprintf("%s %s 127.0.0.1 \"GET /%s-%s HTTP/1.1\"", client6, m[2], eng, port); m != nil && !strings.Contains(string(logged), want) {
					t.Errorf("access log lacks %q:\n%s", want, logged)
				}
			}
			body, _, err := curl(t, client, fmt.Sprintf("http://[%s]:%s/", pod6, inboundPort))
			if err != nil {
				t.Fatal(err)
			}
			parseWhoami(t, body).check(t, "app", env(t, "LAB_APP"), "127.0.0.1:")
		})
	}
}

// TestInboundSourceLab: two outside clients with different IPv6 addresses reach the IPv4-only
// app from two different loopback addresses of the range, the same ones on every request;
// /clients inside the pod maps them back to the real clients. Both engines.
func TestInboundSourceLab(t *testing.T) {
	requireLab(t)
	pod6 := env(t, "LAB_POD6")
	clientA, addrA := env(t, "LAB_NS_CLIENT"), env(t, "LAB_CLIENT6")
	clientB, addrB := env(t, "LAB_NS_DS"), env(t, "LAB_TWO6A") // a second outside host, from one of its addresses
	for _, eng := range []string{"splice", "goroutine"} {
		t.Run(eng, func(t *testing.T) {
			startSidecar(t, "--engine", eng, "--inbound", "8083="+env(t, "LAB_APP"), "--inbound-source", "8083=127.128.0.0/9")
			url := fmt.Sprintf("http://[%s]:8083/", pod6)
			seen := map[string]string{}
			for round := range 3 {
				for _, c := range []struct{ ns, addr string }{{clientA, addrA}, {clientB, addrB}} {
					body, _, err := curl(t, c.ns, "--interface", c.addr, url)
					if err != nil {
						t.Fatalf("client %s: %v (%q)", c.addr, err, body)
					}
					w := parseWhoami(t, body)
					host := w.remote[:strings.LastIndex(w.remote, ":")]
					if !strings.HasPrefix(host, "127.128.") {
						t.Errorf("round %d: the app saw client %s as %s, want an address in 127.128.0.0/9", round, c.addr, w.remote)
					}
					if prev, ok := seen[c.addr]; ok && prev != host {
						t.Errorf("round %d: client %s moved from %s to %s", round, c.addr, prev, host)
					}
					seen[c.addr] = host
				}
			}
			if seen[addrA] == seen[addrB] {
				t.Fatalf("both clients appear to the app as %s", seen[addrA])
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			code, body, err := get(ctx, env(t, "LAB_NS_POD"), adminURL+"/clients")
			var resp clients.Response
			if err != nil || code != 200 || json.Unmarshal([]byte(body), &resp) != nil {
				t.Fatalf("/clients: %d %v %s", code, err, body)
			}
			back := map[string]string{}
			for _, e := range resp.Clients {
				back[e.Source] = e.Client
			}
			for client, src := range seen {
				if back[src] != client {
					t.Errorf("/clients maps %s to %q, want %s:\n%s", src, back[src], client, body)
				}
			}
		})
	}
}
