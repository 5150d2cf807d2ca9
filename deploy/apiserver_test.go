package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The admission tests hand every manifest and every kustomize rendering to a real kube-apiserver
// (with etcd; deploy/k8s/build.sh builds both from the Go module proxy and caches them), in a
// namespace labelled pod-security.kubernetes.io/enforce=restricted, so the API server's own
// field validation and the PodSecurity admission plugin decide, not checks written here.

// testNamespace is where the tests create (dry-run) everything namespaced.
const testNamespace = "nat464-admission"

// apiServer is a running etcd and kube-apiserver on loopback, with a token of system:masters.
type apiServer struct {
	base   string
	token  string
	client *http.Client
	stop   func()
}

var apiSrv struct {
	once sync.Once
	srv  *apiServer
	err  error
}

// TestMain stops the API server the tests started, if any.
func TestMain(m *testing.M) {
	code := m.Run()
	if apiSrv.srv != nil {
		apiSrv.srv.stop()
	}
	os.Exit(code)
}

// requireAPIServer starts the API server once for the test binary. Without the binaries the
// test is skipped, and fails under CI=true: `make test` builds them first.
func requireAPIServer(t *testing.T) *apiServer {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	apiSrv.once.Do(func() {
		dir, err := exec.Command("bash", "k8s/build.sh", "-n").Output()
		if err != nil {
			apiSrv.err = errors.New("kube-apiserver and etcd are not built: run deploy/k8s/build.sh (make k8s-bins)")
			return
		}
		apiSrv.srv, apiSrv.err = startAPIServer(strings.TrimSpace(string(dir)))
	})
	if apiSrv.err != nil {
		if os.Getenv("CI") == "true" || apiSrv.srv == nil && !strings.Contains(apiSrv.err.Error(), "not built") {
			t.Fatal(apiSrv.err)
		}
		t.Skip(apiSrv.err)
	}
	return apiSrv.srv
}

// freeTCP is a TCP port that was free on 127.0.0.1 a moment ago.
func freeTCP() (int, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startAPIServer runs etcd and kube-apiserver from bin on loopback ports, in a fresh directory,
// and waits (at most a minute) until /readyz answers.
func startAPIServer(bin string) (_ *apiServer, err error) {
	work, err := os.MkdirTemp("", "nat464-apiserver-")
	if err != nil {
		return nil, err
	}
	var procs []*exec.Cmd
	var logs []*lockedBuffer // written by the children while an error path reads them
	stop := func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				p.Process.Kill()
				<-done
			}
		}
		os.RemoveAll(work)
	}
	defer func() {
		if err != nil {
			for i, l := range logs {
				err = fmt.Errorf("%w\n--- %s log ---\n%s", err, procs[i].Path, tail(l.String(), 4000))
			}
			stop()
		}
	}()
	start := func(name string, args ...string) error {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		log := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = log, log
		cmd.Dir = work
		if err := cmd.Start(); err != nil {
			return err
		}
		procs, logs = append(procs, cmd), append(logs, log)
		return nil
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = freeTCP(); err != nil {
			return nil, err
		}
	}
	client, peer, secure := ports[0], ports[1], ports[2]
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	if err := start("etcd", "--name", "default", "--data-dir", filepath.Join(work, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL, "--log-level", "warn"); err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	token := rand.Text()
	if err := errors.Join(
		os.WriteFile(filepath.Join(work, "sa-key.pem"), keyPEM, 0o600),
		os.WriteFile(filepath.Join(work, "tokens.csv"), []byte(token+`,admin,admin,"system:masters"`+"\n"), 0o600),
	); err != nil {
		return nil, err
	}
	if err := start("kube-apiserver",
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(secure),
		"--cert-dir", filepath.Join(work, "certs"),
		"--token-auth-file", filepath.Join(work, "tokens.csv"), "--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", filepath.Join(work, "sa-key.pem"),
		"--service-account-signing-key-file", filepath.Join(work, "sa-key.pem"),
		// An IPv6-only cluster, as the manifests expect (their Services ask for IPv6 only); a
		// documentation range, and nothing is ever routed to it.
		"--service-cluster-ip-range", "2001:db8:96::/112",
		"--enable-admission-plugins", "PodSecurity", // (on by default too: named so a default change cannot drop it)
		"--endpoint-reconciler-type", "none", // no Service endpoints for a loopback advertise address
		"--v", "1"); err != nil {
		return nil, err
	}
	s := &apiServer{base: fmt.Sprintf("https://127.0.0.1:%d", secure), token: token, stop: stop,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			// The server's certificate is the self-signed one it made in --cert-dir; the
			// connection is to the loopback port the test chose.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	deadline := time.Now().Add(time.Minute)
	for {
		code, body, rerr := s.do(context.Background(), "GET", "/readyz", nil)
		if rerr == nil && code == http.StatusOK {
			break
		}
		for _, p := range procs {
			if p.ProcessState != nil {
				return nil, fmt.Errorf("%s exited", p.Path)
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("kube-apiserver not ready within a minute: %d %s %v", code, body, rerr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return s, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// do sends one request with the admin token; body, if non-nil, is sent as JSON.
func (s *apiServer) do(ctx context.Context, method, path string, body any) (int, string, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, "", err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, r)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	warn := strings.Join(resp.Header.Values("Warning"), "; ")
	if warn != "" {
		b = append(b, []byte("\nWarning: "+warn)...)
	}
	return resp.StatusCode, string(b), err
}
