package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nat464/nat464-sidecar/config"
)

// apply is a small RFC 6902 applier (add and replace, object members and array indexes or
// "-"), enough to see the pod the API server would make of a patch.
func apply(doc []byte, ops []Op) ([]byte, error) {
	var root any
	if err := json.Unmarshal(doc, &root); err != nil {
		return nil, err
	}
	for _, op := range ops {
		v, err := json.Marshal(op.Value)
		if err != nil {
			return nil, err
		}
		var val any
		json.Unmarshal(v, &val)
		toks := strings.Split(op.Path, "/")[1:]
		for i, t := range toks {
			toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
		}
		if root, err = set(root, toks, val, op.Op); err != nil {
			return nil, fmt.Errorf("%s %s: %w", op.Op, op.Path, err)
		}
	}
	return json.Marshal(root)
}

func set(node any, toks []string, val any, op string) (any, error) {
	last := len(toks) == 1
	switch n := node.(type) {
	case map[string]any:
		if last {
			if _, ok := n[toks[0]]; op == "replace" && !ok {
				return nil, errors.New("replace of a missing member")
			}
			n[toks[0]] = val
			return n, nil
		}
		child, ok := n[toks[0]]
		if !ok {
			return nil, fmt.Errorf("no member %q", toks[0])
		}
		c, err := set(child, toks[1:], val, op)
		n[toks[0]] = c
		return n, err
	case []any:
		if last && toks[0] == "-" && op == "add" {
			return append(n, val), nil
		}
		i, err := strconv.Atoi(toks[0])
		if err != nil || i < 0 || i > len(n) || (i == len(n) && (!last || op != "add")) {
			return nil, fmt.Errorf("bad index %q", toks[0])
		}
		if last && op == "add" {
			return slices.Insert(n, i, val), nil
		}
		if last {
			n[i] = val
			return n, nil
		}
		c, err := set(n[i], toks[1:], val, op)
		n[i] = c
		return n, err
	}
	return nil, fmt.Errorf("cannot descend into %T", node)
}

var testCfg = Config{Image: "registry.example/nat464:v1", DNSUpstream: "[2001:db8::a]:53",
	Validate: func(args []string) error {
		_, err := config.Parse(args, func(string) string { return "" }, io.Discard)
		return err
	}}

// injected runs Patch and apply, and decodes the result.
func injected(t *testing.T, podJSON string) (map[string]any, []Op) {
	t.Helper()
	ops, err := testCfg.Patch([]byte(podJSON), "shop")
	if err != nil {
		t.Fatal(err)
	}
	if ops == nil {
		return nil, nil
	}
	out, err := apply([]byte(podJSON), ops)
	if err != nil {
		t.Fatalf("the patch does not apply: %v", err)
	}
	// Injecting the injected pod again changes nothing.
	if again, err := testCfg.Patch(out, "shop"); err != nil || again != nil {
		t.Errorf("a second injection: %v %v, want none", again, err)
	}
	var m map[string]any
	json.Unmarshal(out, &m)
	return m, ops
}

func get(m any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			mm, _ := m.(map[string]any)
			m = mm[k]
		case int:
			a, _ := m.([]any)
			if k >= len(a) {
				return nil
			}
			m = a[k]
		}
	}
	return m
}

func envOf(t *testing.T, c any) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range get(c, "env").([]any) {
		out[get(e, "name").(string)] = get(e, "value").(string)
	}
	return out
}

func TestNotAnnotated(t *testing.T) {
	for _, p := range []string{
		`{"metadata":{"name":"a"},"spec":{"containers":[{"name":"app"}]}}`,
		`{"metadata":{"annotations":{"nat464.io/inject":"false"}},"spec":{"containers":[{"name":"app"}]}}`,
		`{"metadata":{"annotations":{"nat464.io/inject":"true"}},"spec":{"initContainers":[{"name":"nat464-sidecar"}],"containers":[{"name":"app"}]}}`,
	} {
		if m, _ := injected(t, p); m != nil {
			t.Errorf("%s was injected", p)
		}
	}
}

// An annotated pod gets the sidecar first among its init containers, every app container gets
// the proxy variables it does not set itself, and its own values stay.
func TestInject(t *testing.T) {
	m, _ := injected(t, `{"metadata":{"name":"shop","annotations":{"nat464.io/inject":"true"}},
		"spec":{"initContainers":[{"name":"migrate","image":"m"}],
		"containers":[{"name":"app","image":"a"},
		{"name":"worker","image":"w","env":[{"name":"HTTPS_PROXY","value":"http://corp:3128"},{"name":"JAVA_TOOL_OPTIONS","value":"-Xmx1g"}]}]}}`)
	sc := get(m, "spec", "initContainers", 0)
	if get(sc, "name") != SidecarName || get(sc, "image") != "registry.example/nat464:v1" || get(sc, "restartPolicy") != "Always" {
		t.Fatalf("first init container: %v", sc)
	}
	if get(m, "spec", "initContainers", 1, "name") != "migrate" {
		t.Errorf("the pod's own init container moved: %v", get(m, "spec", "initContainers"))
	}
	if get(sc, "securityContext", "runAsNonRoot") != true || get(sc, "livenessProbe", "httpGet", "path") != "/livez" {
		t.Errorf("sidecar: %v", sc)
	}
	app := envOf(t, get(m, "spec", "containers", 0))
	if app["HTTP_PROXY"] != "http://localhost:1080" || app["JAVA_TOOL_OPTIONS"] != "$(NAT464_JAVA_PROXY_OPTS)" || app["NODE_USE_ENV_PROXY"] != "1" {
		t.Errorf("app env: %v", app)
	}
	names := []string{}
	for _, e := range get(m, "spec", "containers", 0, "env").([]any) {
		names = append(names, get(e, "name").(string))
	}
	if slices.Index(names, "NAT464_JAVA_PROXY_OPTS") > slices.Index(names, "JAVA_TOOL_OPTIONS") {
		t.Errorf("JAVA_TOOL_OPTIONS comes before what it refers to: %v", names)
	}
	w := envOf(t, get(m, "spec", "containers", 1))
	if w["HTTPS_PROXY"] != "http://corp:3128" || w["JAVA_TOOL_OPTIONS"] != "-Xmx1g" || w["HTTP_PROXY"] != "http://localhost:1080" {
		t.Errorf("worker env (its own values must stay): %v", w)
	}
	if _, ok := w["NAT464_JAVA_PROXY_OPTS"]; ok {
		t.Errorf("NAT464_JAVA_PROXY_OPTS added where nothing refers to it")
	}
	if get(m, "metadata", "annotations", AnnotationStatus) != "injected" {
		t.Errorf("annotations: %v", get(m, "metadata", "annotations"))
	}
}

// Flag annotations become arguments (a repeatable flag's list one argument each) that replace
// the defaults of the same name, and the sidecar's ports follow --inbound.
func TestFlagAnnotations(t *testing.T) {
	m, _ := injected(t, `{"metadata":{"annotations":{"nat464.io/inject":"true","nat464.io/inbound":"9000=80, 9001=81",
		"nat464.io/log-level":"debug"}},"spec":{"containers":[{"name":"app"}]}}`)
	var args []string
	for _, a := range get(m, "spec", "initContainers", 0, "args").([]any) {
		args = append(args, a.(string))
	}
	want := []string{"--admin-listen=[::]:9464", "--drain-timeout=15s", "--log-format=json", "--inbound=9000=80", "--inbound=9001=81", "--log-level=debug"}
	if !slices.Equal(args, want) {
		t.Errorf("args %q, want %q", args, want)
	}
	if p := get(m, "spec", "initContainers", 0, "ports", 0, "containerPort"); p != 9000.0 {
		t.Errorf("inbound port %v, want 9000", p)
	}
	// The app declares the inbound port itself (the same port on both sides): the sidecar does
	// not declare it again.
	m, _ = injected(t, `{"metadata":{"annotations":{"nat464.io/inject":"true"}},"spec":{"containers":[{"name":"app","ports":[{"containerPort":8080}]}]}}`)
	if ps := get(m, "spec", "initContainers", 0, "ports").([]any); len(ps) != 1 || get(ps[0], "name") != "nat464-admin" {
		t.Errorf("sidecar ports %v, want the admin port only", ps)
	}
}

// A flag the sidecar does not have, or a value it refuses, is an annotation error naming why.
func TestBadAnnotations(t *testing.T) {
	for _, tc := range []struct{ ann, want string }{
		{`"nat464.io/bogus-flag":"1"`, "bogus-flag"},
		{`"nat464.io/inbound":"not-a-mapping"`, "--inbound"},
		{`"nat464.io/egress":"maybe"`, "nat464.io/egress"},
		{`"nat464.io/--x":"1"`, "not a flag name"},
	} {
		_, err := testCfg.Patch([]byte(`{"metadata":{"annotations":{"nat464.io/inject":"true",`+tc.ann+`}},"spec":{"containers":[{"name":"app"}]}}`), "ns")
		if !errors.Is(err, ErrAnnotation) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an annotation error naming %q", tc.ann, err, tc.want)
		}
	}
	if _, err := testCfg.Patch([]byte(`[1,2]`), "ns"); err == nil {
		t.Error("a JSON array was taken for a pod")
	}
}

// Transparent egress: the pod's DNS is the sidecar with the namespace's search list, the sysctl
// is added or lowered, the state volume and its mount are there, and no proxy environment is
// set.
func TestTransparent(t *testing.T) {
	m, _ := injected(t, `{"metadata":{"annotations":{"nat464.io/inject":"true","nat464.io/egress":"transparent"}},
		"spec":{"securityContext":{"sysctls":[{"name":"net.ipv4.ip_unprivileged_port_start","value":"1024"}]},
		"volumes":[{"name":"data","emptyDir":{}}],"containers":[{"name":"app"}]}}`)
	if get(m, "spec", "dnsPolicy") != "None" || get(m, "spec", "dnsConfig", "nameservers", 0) != "127.0.0.1" ||
		get(m, "spec", "dnsConfig", "searches", 0) != "shop.svc.cluster.local" || get(m, "spec", "dnsConfig", "options", 0, "value") != "5" {
		t.Errorf("dns: %v %v", get(m, "spec", "dnsPolicy"), get(m, "spec", "dnsConfig"))
	}
	if v := get(m, "spec", "securityContext", "sysctls", 0, "value"); v != "53" {
		t.Errorf("sysctl value %v, want 53", v)
	}
	if get(m, "spec", "volumes", 1, "name") != "nat464-state" || get(m, "spec", "initContainers", 0, "volumeMounts", 0, "mountPath") != "/var/lib/nat464" {
		t.Errorf("state volume: %v", get(m, "spec", "volumes"))
	}
	if get(m, "spec", "containers", 0, "env") != nil {
		t.Errorf("transparent pods get no proxy environment: %v", get(m, "spec", "containers", 0, "env"))
	}
	args := fmt.Sprint(get(m, "spec", "initContainers", 0, "args"))
	for _, want := range []string{"--dns-listen=127.0.0.1:53", "--dns-upstream=[2001:db8::a]:53", "--egress-state=/var/lib/nat464/egress.json"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %s lack %s", args, want)
		}
	}
	// A pod with no securityContext, volumes or annotations map of its own.
	m, _ = injected(t, `{"metadata":{"annotations":{"nat464.io/inject":"true","nat464.io/egress":"transparent"}},"spec":{"containers":[{"name":"app"}]}}`)
	if get(m, "spec", "securityContext", "sysctls", 0, "name") != unprivilegedPorts || get(m, "spec", "volumes", 0, "name") != "nat464-state" {
		t.Errorf("from nothing: %v %v", get(m, "spec", "securityContext"), get(m, "spec", "volumes"))
	}
}

// FuzzPatch: any input is refused or patched, never a panic, and a patch always applies and
// is not applied twice.
func FuzzPatch(f *testing.F) {
	f.Add([]byte(`{"metadata":{"annotations":{"nat464.io/inject":"true"}},"spec":{"containers":[{"name":"app","env":[{"name":"X","value":"1"}]}]}}`))
	f.Add([]byte(`{"metadata":{"annotations":{"nat464.io/inject":"true","nat464.io/egress":"transparent"}},"spec":{"securityContext":{"sysctls":[]},"containers":[]}}`))
	f.Add([]byte(`{"metadata":{"annotations":{"nat464.io/inject":"true","nat464.io/inbound":"1=2"}},"spec":{"initContainers":[],"volumes":[]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ops, err := testCfg.Patch(raw, "ns")
		if err != nil || ops == nil {
			return
		}
		out, err := apply(raw, ops)
		if err != nil {
			t.Fatalf("patch %v does not apply to %s: %v", ops, raw, err)
		}
		if again, err := testCfg.Patch(out, "ns"); err != nil || again != nil {
			t.Fatalf("injected twice: %v %v", again, err)
		}
	})
}
