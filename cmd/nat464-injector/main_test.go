package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/inject"
)

func reviewFor(t *testing.T, kind, op, pod string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{"uid": "u-1", "kind": map[string]string{"group": "", "version": "v1", "kind": kind},
			"namespace": "shop", "operation": op, "object": json.RawMessage(pod)}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, h http.Handler, body []byte) (int, *response) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/mutate", bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		return rec.Code, nil
	}
	var out review
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil || out.APIVersion != "admission.k8s.io/v1" {
		t.Fatalf("answer %s: %v", rec.Body, err)
	}
	return rec.Code, out.Response
}

const annotated = `{"metadata":{"annotations":{"nat464.io/inject":"true"}},"spec":{"containers":[{"name":"app"}]}}`

// The webhook answers each AdmissionReview with the request's uid: a patch for an annotated
// pod's CREATE, nothing for other pods, kinds and operations, a refusal (or, failing open, a
// warning) for a bad annotation, and 400 for what is not a review.
func TestHandler(t *testing.T) {
	h := &handler{cfg: inject.Config{Validate: validate}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	_, r := post(t, h, reviewFor(t, "Pod", "CREATE", annotated))
	if !r.Allowed || r.UID != "u-1" || r.PatchType != "JSONPatch" || !strings.Contains(string(r.Patch), inject.SidecarName) {
		t.Errorf("annotated pod: %+v", r)
	}
	for _, tc := range []struct{ kind, op, obj string }{
		{"Pod", "CREATE", `{"metadata":{},"spec":{"containers":[{"name":"app"}]}}`},
		{"Pod", "UPDATE", annotated},
		{"ConfigMap", "CREATE", `{"metadata":{"annotations":{"nat464.io/inject":"true"}},"data":{}}`},
	} {
		if _, r := post(t, h, reviewFor(t, tc.kind, tc.op, tc.obj)); !r.Allowed || r.Patch != nil {
			t.Errorf("%s %s: %+v, want allowed untouched", tc.op, tc.kind, r)
		}
	}
	bad := `{"metadata":{"annotations":{"nat464.io/inject":"true","nat464.io/inbound":"x"}},"spec":{"containers":[{"name":"app"}]}}`
	if _, r := post(t, h, reviewFor(t, "Pod", "CREATE", bad)); r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, "--inbound") {
		t.Errorf("bad annotation, failing closed: %+v", r)
	}
	h.failOpen = true
	if _, r := post(t, h, reviewFor(t, "Pod", "CREATE", bad)); !r.Allowed || r.Patch != nil || len(r.Warnings) != 1 {
		t.Errorf("bad annotation, failing open: %+v", r)
	}
	for _, body := range [][]byte{[]byte("garbage"), []byte(`{"apiVersion":"admission.k8s.io/v1"}`)} {
		if code, _ := post(t, h, body); code != http.StatusBadRequest {
			t.Errorf("%q: %d, want 400", body, code)
		}
	}
}

// writePair writes a fresh self-signed certificate for name and its key.
func writePair(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cf, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cf, kf
}

// A renewed certificate (the Secret's files rewritten) is served after the next check; a
// broken pair keeps the previous one.
func TestCertReload(t *testing.T) {
	dir := t.TempDir()
	cf, kf := writePair(t, dir, "one.example")
	c, err := newCertReloader(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	name := func() string {
		cert, _ := c.get(nil)
		leaf, _ := x509.ParseCertificate(cert.Certificate[0])
		return leaf.Subject.CommonName
	}
	if name() != "one.example" {
		t.Fatal(name())
	}
	writePair(t, dir, "two.example")
	os.Chtimes(cf, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	c.checked = time.Time{}
	if got := name(); got != "two.example" {
		t.Errorf("after renewal: %s", got)
	}
	os.WriteFile(kf, []byte("broken"), 0o600)
	c.checked = time.Time{}
	if got := name(); got != "two.example" {
		t.Errorf("after a broken key: %s, want the previous certificate", got)
	}
	if _, err := newCertReloader(cf, kf); err == nil {
		t.Error("a broken pair at start was accepted")
	}
}

// Bad flags exit 2 with a message naming what to set. (Serving, TLS included, is tested
// against a real kube-apiserver in deploy's TestInjector.)
func TestRunBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--on-error", "maybe", "--tls-cert-file", "a", "--tls-key-file", "b"}, {}, {"--bogus"},
		{"--tls-cert-file", "/nonexistent", "--tls-key-file", "/nonexistent"}} {
		var out bytes.Buffer
		if code := run(args, &out); code != 2 || out.Len() == 0 {
			t.Errorf("%q: exit %d, output %q; want 2 and a message", args, code, out.String())
		}
	}
}
