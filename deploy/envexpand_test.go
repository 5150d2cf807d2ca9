package deploy

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// expandEnv is the environment kubelet gives a container, as far as literal values go: each
// value has its $(NAME) references replaced by variables defined earlier in the list (envFrom
// and ConfigMap values are not modelled; the manifests here use neither). A reference to a name
// not yet defined stays as written, "$$" is a literal "$", and entries without a value (valueFrom)
// are skipped. unresolved lists, per variable, the references that stayed as written.
func expandEnv(env []corev1.EnvVar) (vars map[string]string, unresolved map[string][]string) {
	vars = map[string]string{}
	unresolved = map[string][]string{}
	for _, e := range env {
		if e.Value == "" {
			continue
		}
		v, missing := expand(e.Value, func(name string) (string, bool) {
			val, ok := vars[name]
			return val, ok
		})
		vars[e.Name] = v
		if len(missing) > 0 {
			unresolved[e.Name] = missing
		}
	}
	return vars, unresolved
}

// expand applies kubelet's $(NAME) syntax to s: "$$" is an escaped "$", "$(NAME)" is lookup's
// value or, when lookup has none, left as written (and NAME is returned in missing); a "$"
// followed by anything else, or a "$(" with no ")", is copied as is.
func expand(s string, lookup func(string) (string, bool)) (out string, missing []string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch next := s[i+1]; next {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
				missing = append(missing, name)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
			b.WriteByte(next)
			i++
		}
	}
	return b.String(), missing
}

// TestExpand pins expand and expandEnv to kubelet's rules (the Kubernetes documentation's
// "Define dependent environment variables" examples and their edge cases).
func TestExpand(t *testing.T) {
	env := func(kv ...string) []corev1.EnvVar {
		var out []corev1.EnvVar
		for i := 0; i < len(kv); i += 2 {
			out = append(out, corev1.EnvVar{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		env       []corev1.EnvVar
		want      string // the value of the last variable
		unresolve []string
	}{
		{"defined earlier", env("A", "x", "B", "$(A) y"), "x y", nil},
		{"defined later stays as written", env("B", "$(A) y", "A", "x", "C", "$(B)"), "$(A) y", nil},
		{"undefined", env("B", "-Dp=1 $(NOPE)"), "-Dp=1 $(NOPE)", []string{"NOPE"}},
		{"escaped reference", env("A", "x", "B", "$$(A)"), "$(A)", nil},
		{"escaped dollar", env("B", "cost $$5"), "cost $5", nil},
		{"lone dollar", env("B", "a$b $"), "a$b $", nil},
		{"unterminated", env("A", "x", "B", "$(A"), "$(A", nil},
		{"chained", env("A", "1", "B", "$(A)2", "C", "$(B)3"), "123", nil},
		{"self", env("A", "$(A)"), "$(A)", []string{"A"}},
		{"redefined", env("A", "1", "A", "$(A)2"), "12", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars, unresolved := expandEnv(tc.env)
			last := tc.env[len(tc.env)-1].Name
			if vars[last] != tc.want {
				t.Errorf("%s = %q, want %q", last, vars[last], tc.want)
			}
			if got := unresolved[last]; strings.Join(got, ",") != strings.Join(tc.unresolve, ",") {
				t.Errorf("unresolved %v, want %v", got, tc.unresolve)
			}
		})
	}
}

// TestJavaToolOptions reads every app container's JAVA_TOOL_OPTIONS as the JVM gets it, after
// kubelet's expansion, and wants each proxy property on HTTP_PROXY's host and port; then it
// breaks the base's variables one way at a time.
func TestJavaToolOptions(t *testing.T) {
	var envs [][]corev1.EnvVar
	for _, src := range []string{"base", "examples", "overlays/example", existingApp} {
		load := loadDir
		if hasKustomization(src) {
			load = func(dir string) ([]object, error) { return render(".", dir) }
		}
		objs, err := load(src)
		if err != nil {
			t.Fatal(err)
		}
		pods, _ := podsAndServices(objs)
		for _, p := range pods {
			for _, c := range p.spec.Containers {
				envs = append(envs, c.Env)
			}
		}
	}
	if len(envs) < 4 {
		t.Fatalf("%d app containers, want at least 4", len(envs))
	}
	for i, env := range envs {
		vars, unresolved := expandEnv(env)
		if len(unresolved) > 0 {
			t.Errorf("container %d: unresolved %v", i, unresolved)
		}
		props := javaProps(vars["JAVA_TOOL_OPTIONS"])
		for _, k := range []string{"http.proxyHost", "http.proxyPort", "https.proxyHost", "https.proxyPort", "socksProxyHost", "socksProxyPort", "http.nonProxyHosts"} {
			if props[k] == "" {
				t.Errorf("container %d: JAVA_TOOL_OPTIONS=%q lacks -D%s", i, vars["JAVA_TOOL_OPTIONS"], k)
			}
		}
		for _, p := range javaProblems(vars) {
			t.Errorf("container %d: %s", i, p)
		}
	}
	base := envs[0] // base/deployment.yaml's app
	set := func(name, value string) []corev1.EnvVar {
		out := slices.Clone(base)
		for i := range out {
			if out[i].Name == name {
				out[i].Value = value
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		env  []corev1.EnvVar
	}{
		{"HTTP_PROXY on another port", set("HTTP_PROXY", "http://localhost:3128")},
		{"HTTP_PROXY on another host", set("HTTP_PROXY", "http://[::1]:1080")},
		{"NO_PROXY with another entry", set("NO_PROXY", "localhost,127.0.0.1,::1,.example.com")},
		{"JVM options without http.*", set(javaOptsVar, "-Dhttps.proxyHost=localhost -Dhttps.proxyPort=1080 -DsocksProxyHost=localhost -DsocksProxyPort=1080 -Dhttp.nonProxyHosts=localhost|127.0.0.1|[::1]")},
		{"nonProxyHosts with ::1 unbracketed", set(javaOptsVar, strings.Replace(envValue(base, javaOptsVar), "[::1]", "::1", 1))},
		{"reference escaped", set("JAVA_TOOL_OPTIONS", "$$(NAT464_JAVA_PROXY_OPTS)")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars, _ := expandEnv(tc.env)
			if len(javaProblems(vars)) == 0 {
				t.Errorf("JAVA_TOOL_OPTIONS=%q accepted", vars["JAVA_TOOL_OPTIONS"])
			}
		})
	}
}

func envValue(env []corev1.EnvVar, name string) string {
	for _, e := range env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// loadDir decodes every YAML file directly in dir.
func loadDir(dir string) ([]object, error) {
	files, err := yamlFiles(dir)
	if err != nil {
		return nil, err
	}
	var out []object
	for _, f := range files {
		data, err := readFile(dir, f)
		if err != nil {
			return nil, err
		}
		objs, err := decodeStrict(f, data)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}
