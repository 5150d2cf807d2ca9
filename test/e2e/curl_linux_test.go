//go:build e2e && linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const timeMarker = "\n@@time_total="

// curl runs curl inside namespace ns and returns the body and curl's own time_total.
func curl(t *testing.T, ns string, args ...string) (string, time.Duration, error) {
	t.Helper()
	return curlVia(t, ns, nil, args...)
}

// curlVia is curl run under a wrapper command (such as proxychains4).
func curlVia(t *testing.T, ns string, wrapper []string, args ...string) (string, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append(wrapper, "curl", "-sS", "--max-time", "5", "-w", timeMarker+"%{time_total}")
	out, err := run(ctx, ns, append(full, args...)...)
	i := strings.LastIndex(out, timeMarker)
	if i < 0 {
		return out, 0, err
	}
	body, total := out[:i], out[i+len(timeMarker):]
	secs, perr := strconv.ParseFloat(strings.TrimSpace(total), 64)
	if perr != nil {
		return body, 0, fmt.Errorf("curl time_total %q: %v", total, perr)
	}
	return body, time.Duration(secs * float64(time.Second)), err
}

// whoami is one parsed labsrv "/" answer.
type whoami struct {
	server, local, remote string
}

var whoamiRE = regexp.MustCompile(`^server=(\S+) local=(\S+) remote=(\S+)\n$`)

func parseWhoami(t *testing.T, body string) whoami {
	t.Helper()
	m := whoamiRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("not a labsrv answer: %q", body)
	}
	return whoami{server: m[1], local: m[2], remote: m[3]}
}

// check compares an answer with the expected server and local address; remote is a prefix
// of the peer address ("" skips it).
func (w whoami) check(t *testing.T, server, local, remotePrefix string) {
	t.Helper()
	if w.server != server || (local != "" && w.local != local) || !strings.HasPrefix(w.remote, remotePrefix) {
		t.Errorf("answered by server=%s local=%s remote=%s; want server=%s local=%s remote=%s*",
			w.server, w.local, w.remote, server, local, remotePrefix)
	}
}

// podCurl fetches url from the pod through the sidecar's proxy with the given curl proxy flag
// (for example "--socks5-hostname") and checks the answering server.
func podCurl(t *testing.T, flag, url string) (whoami, time.Duration) {
	t.Helper()
	body, d, err := curl(t, env(t, "LAB_NS_POD"), flag, proxyAddr, url)
	if err != nil {
		t.Fatalf("curl %s %s %s: %v (body %q)", flag, proxyAddr, url, err, body)
	}
	return parseWhoami(t, body), d
}

// writeFile writes a scratch file the pod's processes can read.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(suite.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(p) })
	return p
}

// v4From is the prefix of every peer address a NAT64-translated flow shows the IPv4 server
// (tayga's dynamic pool, 192.0.2.128/25).
const v4From = "192.0.2."
