package deploy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/nat464/nat464-sidecar/config"
)

// injectNamespace is labelled for the webhook and enforces restricted.
const injectNamespace = "nat464-inject"

// testCA makes a CA and a serving certificate for 127.0.0.1 signed by it, written to dir.
func testCA(t *testing.T, dir string) (caPEM []byte, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nat464 test CA"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nat464-injector"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), certFile, keyFile
}

// startInjector builds cmd/nat464-injector and runs it on a loopback port until the test ends.
func startInjector(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nat464-injector")
	build := exec.Command("go", "build", "-o", bin, "./cmd/nat464-injector")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/nat464-injector: %v\n%s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp4", "127.0.0.1:0"))
	cmd := exec.Command(bin, "--listen", addr, "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--dns-upstream", "[2001:db8:96::a]:53", "--image", "registry.example/nat464-sidecar:test")
	log := &lockedBuffer{} // the injector writes while a failure reads
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("injector log:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp4", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("the injector did not listen on %s:\n%s", addr, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createIn creates obj (for real) at path, or finds it there.
func (s *apiServer) createIn(t *testing.T, path string, obj any) {
	t.Helper()
	code, body, err := s.do(context.Background(), "POST", path, obj)
	if err != nil || (code != http.StatusCreated && code != http.StatusConflict) {
		t.Fatalf("POST %s: %d %s %v", path, code, body, err)
	}
}

// appPod is an app's pod as a user writes it: restricted, no sidecar, annotations given.
func appPod(name string, annotations map[string]string) *corev1.Pod {
	f, tr := false, true
	return &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &tr, RunAsUser: new(int64(1000)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/legacy-app:1",
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				Env:   []corev1.EnvVar{{Name: "HTTPS_PROXY", Value: "http://corp-proxy.example:3128"}},
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &f,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
		}}
}

// createPod creates p as a dry run in the injection namespace and returns the pod the API
// server made of it, decoded strictly.
func (s *apiServer) createPod(t *testing.T, p *corev1.Pod) (int, *corev1.Pod, string) {
	t.Helper()
	code, body, err := s.do(context.Background(), "POST", "/api/v1/namespaces/"+injectNamespace+"/pods?dryRun=All&fieldValidation=Strict", p)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusCreated {
		return code, nil, body
	}
	var out corev1.Pod
	if i := strings.Index(body, "\nWarning: "); i >= 0 {
		t.Errorf("created with a warning: %s", body[i:])
		body = body[:i]
	}
	if err := yaml.UnmarshalStrict([]byte(body), &out); err != nil {
		t.Fatalf("the created pod does not decode strictly: %v", err)
	}
	return code, &out, body
}

// TestInjector: the injector, registered with the webhook configuration of deploy/injector
// (its rules and namespace selector; the client config pointed at the test's loopback port),
// mutates pods a real kube-apiserver creates in a restricted namespace. An annotated pod comes
// out with the sidecar first among its init containers, admitted under restricted, whose
// arguments the sidecar's own parser takes, and the app keeps its own proxy variable; a
// transparent-egress pod gets its DNS, sysctl and state volume and is admitted too; an
// unannotated pod is untouched; a bad annotation is refused with the reason.
func TestInjector(t *testing.T) {
	s := requireAPIServer(t)
	caPEM, certFile, keyFile := testCA(t, t.TempDir())
	addr := startInjector(t, certFile, keyFile)

	objs, err := render(".", "injector")
	if err != nil {
		t.Fatal(err)
	}
	var wh *admissionregistrationv1.MutatingWebhookConfiguration
	for _, o := range objs {
		if w, ok := o.obj.(*admissionregistrationv1.MutatingWebhookConfiguration); ok {
			wh = w.DeepCopy()
		}
	}
	if wh == nil || len(wh.Webhooks) != 1 {
		t.Fatal("no webhook in deploy/injector")
	}
	url := "https://" + addr + "/mutate"
	wh.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM}
	s.createIn(t, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", wh)
	t.Cleanup(func() {
		s.do(context.Background(), "DELETE", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"+wh.Name, nil)
	})
	s.createIn(t, "/api/v1/namespaces", &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: injectNamespace, Labels: map[string]string{
			"nat464.io/injection":                        "enabled",
			"pod-security.kubernetes.io/enforce":         "restricted",
			"pod-security.kubernetes.io/enforce-version": "latest",
		}}})
	s.createIn(t, "/api/v1/namespaces/"+injectNamespace+"/serviceaccounts", &corev1.ServiceAccount{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: metav1.ObjectMeta{Name: "default"}})

	parse := func(t *testing.T, c *corev1.Container) *config.Config {
		t.Helper()
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		cfg, err := config.Parse(c.Args, func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatalf("the sidecar would refuse its arguments %q: %v", c.Args, err)
		}
		return cfg
	}
	t.Run("annotated", func(t *testing.T) {
		// The webhook may be asked before the API server has seen its configuration: retry.
		var p *corev1.Pod
		for deadline := time.Now().Add(20 * time.Second); ; {
			var code int
			var body string
			code, p, body = s.createPod(t, appPod("shop", map[string]string{"nat464.io/inject": "true", "nat464.io/log-level": "debug"}))
			if code != http.StatusCreated {
				t.Fatalf("refused: %d %s", code, body)
			}
			if len(p.Spec.InitContainers) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if len(p.Spec.InitContainers) == 0 || p.Spec.InitContainers[0].Name != "nat464-sidecar" {
			t.Fatalf("not injected: %+v", p.Spec.InitContainers)
		}
		sc := &p.Spec.InitContainers[0]
		if sc.Image != "registry.example/nat464-sidecar:test" || sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("sidecar image %s restartPolicy %v", sc.Image, sc.RestartPolicy)
		}
		cfg := parse(t, sc)
		if cfg.LogLevel != "debug" {
			t.Errorf("nat464.io/log-level did not reach the sidecar: %q", cfg.LogLevel)
		}
		env := map[string]string{}
		for _, e := range p.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		if env["HTTPS_PROXY"] != "http://corp-proxy.example:3128" || env["HTTP_PROXY"] != "http://localhost:1080" {
			t.Errorf("app env: %v", env)
		}
		if p.Annotations["nat464.io/status"] != "injected" {
			t.Errorf("annotations: %v", p.Annotations)
		}
		// The same pod through the sidecar component's checks (probes, grace, inbound, env).
		is := issues{}
		checkProbes(sidecar{c: sc, cfg: cfg}, &is)
		checkInbound(&p.Spec, sidecar{c: sc, cfg: cfg}, &is)
		for _, i := range is {
			t.Error(i)
		}
	})
	t.Run("transparent", func(t *testing.T) {
		pod := appPod("legacy", map[string]string{"nat464.io/inject": "true", "nat464.io/egress": "transparent"})
		pod.Spec.Containers[0].Env = nil // (a proxy setting of the app's own would be kept, and checkTransparent would object)
		code, p, body := s.createPod(t, pod)
		if code != http.StatusCreated {
			t.Fatalf("refused: %d %s", code, body)
		}
		if p.Spec.DNSPolicy != corev1.DNSNone || p.Spec.DNSConfig == nil || p.Spec.DNSConfig.Searches[0] != injectNamespace+".svc.cluster.local" {
			t.Errorf("dns: %v %+v", p.Spec.DNSPolicy, p.Spec.DNSConfig)
		}
		cfg := parse(t, &p.Spec.InitContainers[0])
		if !cfg.DNSListen.IsValid() || cfg.EgressState == "" {
			t.Errorf("transparent flags: dns %v state %q", cfg.DNSListen, cfg.EgressState)
		}
		is := issues{}
		checkTransparent(&p.Spec, sidecar{c: &p.Spec.InitContainers[0], cfg: cfg}, &is)
		for _, i := range is {
			t.Error(i)
		}
	})
	t.Run("not annotated", func(t *testing.T) {
		code, p, body := s.createPod(t, appPod("plain", nil))
		if code != http.StatusCreated {
			t.Fatalf("refused: %d %s", code, body)
		}
		if len(p.Spec.InitContainers) != 0 || len(p.Spec.Containers[0].Env) != 1 || p.Annotations["nat464.io/status"] != "" {
			t.Errorf("an unannotated pod was changed: %+v", p.Spec)
		}
	})
	t.Run("bad annotation", func(t *testing.T) {
		code, _, body := s.createPod(t, appPod("bad", map[string]string{"nat464.io/inject": "true", "nat464.io/inbound": "nonsense"}))
		if code == http.StatusCreated || !strings.Contains(body, "--inbound") {
			t.Errorf("%d %s, want a refusal naming --inbound", code, body)
		}
	})
	if t.Failed() {
		b, _ := json.Marshal(wh)
		t.Logf("webhook: %s", b)
	}
}
