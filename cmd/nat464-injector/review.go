package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/nat464/nat464-sidecar/inject"
)

// review is the part of an admission.k8s.io/v1 AdmissionReview the webhook reads and writes.
type review struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Request    *request  `json:"request,omitempty"`
	Response   *response `json:"response,omitempty"`
}

type request struct {
	UID       string          `json:"uid"`
	Kind      groupVK         `json:"kind"`
	Namespace string          `json:"namespace"`
	Operation string          `json:"operation"`
	Object    json.RawMessage `json:"object"`
}

type groupVK struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

type response struct {
	UID       string   `json:"uid"`
	Allowed   bool     `json:"allowed"`
	PatchType string   `json:"patchType,omitempty"`
	Patch     []byte   `json:"patch,omitempty"` // base64 in JSON, as the API wants
	Warnings  []string `json:"warnings,omitempty"`
	Result    *status  `json:"status,omitempty"`
}

type status struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// maxReview bounds a request body: a pod far bigger than any real one.
const maxReview = 3 << 20

type handler struct {
	cfg      inject.Config
	failOpen bool
	log      *slog.Logger
}

// ServeHTTP answers one AdmissionReview: a CREATE of a Pod gets the injection patch (or
// none); anything else is allowed untouched.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReview))
	if err != nil {
		http.Error(w, "request body: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	var in review
	if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	req := in.Request
	resp := &response{UID: req.UID, Allowed: true}
	if req.Kind.Group == "" && req.Kind.Kind == "Pod" && req.Operation == "CREATE" {
		h.mutate(req, resp)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(review{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview", Response: resp})
}

func (h *handler) mutate(req *request, resp *response) {
	ops, err := h.cfg.Patch(req.Object, req.Namespace)
	switch {
	case errors.Is(err, inject.ErrAnnotation) && h.failOpen:
		resp.Warnings = []string{"nat464-injector: sidecar not injected: " + err.Error()}
		h.log.Warn("pod admitted without the sidecar", "namespace", req.Namespace, "err", err)
		return
	case err != nil:
		resp.Allowed = false
		resp.Result = &status{Code: http.StatusBadRequest, Message: "nat464-injector: " + err.Error()}
		h.log.Warn("pod refused", "namespace", req.Namespace, "err", err)
		return
	case ops == nil:
		return
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		resp.Allowed = false
		resp.Result = &status{Code: http.StatusInternalServerError, Message: "nat464-injector: " + err.Error()}
		return
	}
	resp.PatchType, resp.Patch = "JSONPatch", patch
	h.log.Info("sidecar injected", "namespace", req.Namespace, "uid", req.UID)
}

// certReloader serves the certificate and key files, re-reading them when their modification
// time or size changes (checked at most every recheck). A pair that does not load keeps the
// previous one, and says so in the error log once per change.
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

const recheck = 10 * time.Second

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certReloader) fileStamp() string {
	var s string
	for _, f := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "missing"
		}
		s += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return s
}

func (c *certReloader) load() error {
	stamp := c.fileStamp()
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	c.cert, c.stamp = &cert, stamp
	return nil
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) >= recheck {
		c.checked = time.Now()
		if stamp := c.fileStamp(); stamp != c.stamp {
			if err := c.load(); err != nil {
				c.stamp = stamp // do not retry until the files change again
				slog.Error("nat464-injector: new certificate not loaded; serving the previous one", "err", err)
			}
		}
	}
	return c.cert, nil
}
