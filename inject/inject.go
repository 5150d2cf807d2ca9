// Package inject is the mutation nat464-injector applies to a pod at admission: for a pod
// annotated nat464.io/inject: "true" it returns the RFC 6902 JSON Patch that adds the native
// sidecar (with its probes, resources and restricted security context, as
// deploy/components/sidecar has it), the proxy environment of the app containers (merged: a
// variable a container already sets is never overwritten), and, with nat464.io/egress:
// transparent, the pod's DNS settings, the unprivileged-port sysctl and the state volume of
// transparent egress (deploy/components/transparent-egress). Other nat464.io/FLAG annotations
// become the sidecar's --FLAG arguments, checked by the caller's Validate (the sidecar's own
// flag parser) before anything is patched.
//
// In scope: reading the parts of a pod it needs, building the patch, idempotence (a pod whose
// annotations say it was injected, or that already has the sidecar, gets no patch).
//
// Not in scope: the AdmissionReview envelope, TLS and serving (cmd/nat464-injector), and any
// call to the API server.
package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Annotations the injector reads and writes.
const (
	AnnotationInject   = "nat464.io/inject"    // "true": inject this pod
	AnnotationEgress   = "nat464.io/egress"    // "transparent": the pod's DNS goes to the sidecar
	AnnotationProxyEnv = "nat464.io/proxy-env" // "false": leave the app containers' environment alone
	AnnotationStatus   = "nat464.io/status"    // written: "injected"
	annotationPrefix   = "nat464.io/"
)

// SidecarName is the name of the injected container, the same as the manifests'.
const SidecarName = "nat464-sidecar"

// Config is what every injection shares.
type Config struct {
	// Image is the sidecar image.
	Image string
	// DNSUpstream is the cluster DNS Service address for transparent egress ("[fd00:10:96::a]:53").
	DNSUpstream string
	// ClusterDomain completes the pod's search list for transparent egress; "cluster.local" if empty.
	ClusterDomain string
	// Validate, if set, is given the sidecar's arguments before a patch is made: the sidecar's
	// flag parser, so that a bad annotation is refused at admission, not in a crash loop.
	Validate func(args []string) error
}

// ErrAnnotation wraps every error about an annotation's value.
var ErrAnnotation = errors.New("inject: bad annotation")

// pod is the part of a Pod the injector reads (see decodePod).
type pod struct {
	Metadata struct {
		Namespace   string
		Annotations map[string]string
	}
	Spec struct {
		InitContainers  []container // nil when absent or null
		Containers      []container
		HasVolumes      bool
		SecurityContext *struct {
			Sysctls []sysctl // nil when absent or null
		}
	}
}

type container struct {
	Name  string
	Env   []envVar // nil when absent or null
	Ports []int    // containerPort of each port it declares
}

// object is a JSON object whose members are looked up by their exact name: encoding/json
// matches struct fields case-insensitively, and a patch written for "spec" must not be made
// from a member called "Spec".
type object map[string]json.RawMessage

func asObject(raw json.RawMessage) (object, error) {
	var o object
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if err := json.Unmarshal(raw, &o); err != nil || o == nil {
		return nil, fmt.Errorf("want an object: %.40s", raw)
	}
	return o, nil
}

// member decodes o[key] into v (left alone when absent or null); it reports whether it was there.
func (o object) member(key string, v any) (bool, error) {
	raw, ok := o[key]
	if !ok || string(raw) == "null" {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("%s: %w", key, err)
	}
	return true, nil
}

// objects decodes o[key] as an array of objects.
func (o object) objects(key string) ([]object, bool, error) {
	var raws []json.RawMessage
	there, err := o.member(key, &raws)
	if err != nil || !there {
		return nil, there, err
	}
	out := make([]object, len(raws))
	for i, r := range raws {
		if out[i], err = asObject(r); err != nil || out[i] == nil {
			return nil, true, fmt.Errorf("%s[%d]: want an object", key, i)
		}
	}
	return out, true, nil
}

func decodeContainers(spec object, key string) ([]container, error) {
	objs, there, err := spec.objects(key)
	if err != nil || !there {
		return nil, err
	}
	out := make([]container, len(objs))
	for i, o := range objs {
		if _, err := o.member("name", &out[i].Name); err != nil {
			return nil, err
		}
		ports, _, err := o.objects("ports")
		if err != nil {
			return nil, err
		}
		for _, p := range ports {
			var n int
			if _, err := p.member("containerPort", &n); err != nil {
				return nil, err
			}
			out[i].Ports = append(out[i].Ports, n)
		}
		envs, there, err := o.objects("env")
		if err != nil {
			return nil, err
		}
		if there {
			out[i].Env = make([]envVar, len(envs))
			for j, e := range envs {
				if _, err := e.member("name", &out[i].Env[j].Name); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// decodePod reads the members of a pod's JSON the injector needs, by their exact names. A pod
// without a spec object is refused.
func decodePod(raw []byte) (*pod, error) {
	top, err := asObject(raw)
	if err != nil || top == nil {
		return nil, errors.New("want a JSON object")
	}
	meta, err := asObject(top["metadata"])
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	spec, err := asObject(top["spec"])
	if err != nil || spec == nil {
		return nil, errors.New("no spec object")
	}
	var p pod
	if _, err := meta.member("namespace", &p.Metadata.Namespace); err != nil {
		return nil, err
	}
	if _, err := meta.member("annotations", &p.Metadata.Annotations); err != nil {
		return nil, err
	}
	if p.Spec.InitContainers, err = decodeContainers(spec, "initContainers"); err != nil {
		return nil, err
	}
	if p.Spec.Containers, err = decodeContainers(spec, "containers"); err != nil {
		return nil, err
	}
	var vols []json.RawMessage
	if p.Spec.HasVolumes, err = spec.member("volumes", &vols); err != nil {
		return nil, err
	}
	sc, err := asObject(spec["securityContext"])
	if err != nil {
		return nil, fmt.Errorf("securityContext: %w", err)
	}
	if sc != nil {
		p.Spec.SecurityContext = &struct{ Sysctls []sysctl }{}
		objs, there, err := sc.objects("sysctls")
		if err != nil {
			return nil, err
		}
		if there {
			p.Spec.SecurityContext.Sysctls = make([]sysctl, len(objs))
			for i, o := range objs {
				if _, err := o.member("name", &p.Spec.SecurityContext.Sysctls[i].Name); err != nil {
					return nil, err
				}
				if _, err := o.member("value", &p.Spec.SecurityContext.Sysctls[i].Value); err != nil {
					return nil, err
				}
			}
		}
	}
	return &p, nil
}

// Op is one RFC 6902 operation.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Patch returns the JSON Patch that injects the sidecar into the pod (its JSON), or nil when
// the pod is not annotated for it or was injected already. namespace is the request's (a pod
// being created may not carry one). An annotation the sidecar cannot take is an error
// wrapping ErrAnnotation.
func (c *Config) Patch(raw []byte, namespace string) ([]Op, error) {
	p, err := decodePod(raw)
	if err != nil {
		return nil, fmt.Errorf("inject: not a pod: %w", err)
	}
	a := p.Metadata.Annotations
	if a[AnnotationInject] != "true" || a[AnnotationStatus] == "injected" ||
		slices.ContainsFunc(p.Spec.InitContainers, func(c container) bool { return c.Name == SidecarName }) ||
		slices.ContainsFunc(p.Spec.Containers, func(c container) bool { return c.Name == SidecarName }) {
		return nil, nil
	}
	if ns := p.Metadata.Namespace; ns != "" {
		namespace = ns
	}
	transparent := false
	switch v := a[AnnotationEgress]; v {
	case "", "proxy":
	case "transparent":
		transparent = true
	default:
		return nil, fmt.Errorf("%w: %s: %q is not transparent or proxy", ErrAnnotation, AnnotationEgress, v)
	}
	args, err := c.args(a, transparent)
	if err != nil {
		return nil, err
	}
	sc := c.sidecar(args, transparent, p.Spec.Containers)
	var ops []Op
	if p.Spec.InitContainers == nil {
		ops = append(ops, Op{"add", "/spec/initContainers", []any{sc}})
	} else { // first: it starts before the other init containers, which may need the network
		ops = append(ops, Op{"add", "/spec/initContainers/0", sc})
	}
	if !transparent && a[AnnotationProxyEnv] != "false" {
		for i, ct := range p.Spec.Containers {
			ops = append(ops, envOps(i, ct)...)
		}
	}
	if transparent {
		ops = append(ops, c.transparentOps(p, namespace)...)
	}
	if a == nil {
		ops = append(ops, Op{"add", "/metadata/annotations", map[string]string{AnnotationStatus: "injected"}})
	} else {
		ops = append(ops, Op{"add", "/metadata/annotations/" + escape(AnnotationStatus), "injected"})
	}
	return ops, nil
}

// reserved annotations are the injector's own, never a flag.
var reserved = map[string]bool{"inject": true, "egress": true, "proxy-env": true, "status": true}

// args are the sidecar's arguments: the manifests' defaults, transparent egress's, then one
// per nat464.io/FLAG annotation (a comma-separated value of a repeatable flag, --inbound and
// --inbound-udp, is one argument per item), in name order; a flag given by annotation
// replaces the default of the same name.
func (c *Config) args(a map[string]string, transparent bool) ([]string, error) {
	defaults := []string{"--inbound=8080=127.0.0.1:8080", "--admin-listen=[::]:9464", "--drain-timeout=15s", "--log-format=json"}
	if transparent {
		defaults = append(defaults, "--dns-listen=127.0.0.1:53", "--egress-ports=80,443", "--egress-state="+stateDir+"/egress.json")
		if c.DNSUpstream != "" {
			defaults = append(defaults, "--dns-upstream="+c.DNSUpstream)
		}
	}
	var names []string
	for k := range a {
		if name, ok := strings.CutPrefix(k, annotationPrefix); ok && !reserved[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	given := map[string]bool{}
	var extra []string
	for _, name := range names {
		if name == "" || strings.ContainsAny(name, "=/ ") || strings.HasPrefix(name, "-") {
			return nil, fmt.Errorf("%w: %s%s is not a flag name", ErrAnnotation, annotationPrefix, name)
		}
		given[name] = true
		v := a[annotationPrefix+name]
		if name == "inbound" || name == "inbound-udp" {
			for item := range strings.SplitSeq(v, ",") {
				extra = append(extra, "--"+name+"="+strings.TrimSpace(item))
			}
			continue
		}
		extra = append(extra, "--"+name+"="+v)
	}
	var args []string
	for _, d := range defaults {
		name, _, _ := strings.Cut(strings.TrimPrefix(d, "--"), "=")
		if !given[name] {
			args = append(args, d)
		}
	}
	args = append(args, extra...)
	if c.Validate != nil {
		if err := c.Validate(args); err != nil {
			return nil, fmt.Errorf("%w: the sidecar would refuse its arguments %q: %w", ErrAnnotation, args, err)
		}
	}
	return args, nil
}

// escape encodes a JSON Pointer token (RFC 6901 §3).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
