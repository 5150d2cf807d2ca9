package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The existing-app overlay: a vendor's Deployment and Service plus components/sidecar.
const (
	existingApp    = "overlays/existing-app"
	sidecarComp    = "components/sidecar"
	existingVendor = existingApp + "/inventory.yaml"
)

// renderEdited renders the existing-app overlay from an in-memory copy of it and of the
// component, after edit has changed the copy's files (keyed by path relative to deploy/).
func renderEdited(t *testing.T, edit func(files map[string]string)) []object {
	t.Helper()
	files := map[string]string{}
	for _, dir := range []string{existingApp, sidecarComp} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[filepath.Join(dir, e.Name())] = string(data)
		}
	}
	edit(files)
	fs := filesys.MakeFsInMemory()
	for p, data := range files {
		if err := fs.WriteFile(filepath.Join("/deploy", p), []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, filepath.Join("/deploy", existingApp))
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeStrict(existingApp+" (edited)", out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// checkVendorKept wants what the vendor's Deployment said to survive the component: every app
// container's variables with their values, except JAVA_TOOL_OPTIONS, whose options must all be
// in the expanded value (behind the proxy's), and its probes as they were.
func checkVendorKept(vendor, rendered *appsv1.Deployment, is *issues) {
	for _, vc := range vendor.Spec.Template.Spec.Containers {
		i := slices.IndexFunc(rendered.Spec.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == vc.Name })
		if i < 0 {
			is.add("vendor", "container %q is gone", vc.Name)
			continue
		}
		rc := &rendered.Spec.Template.Spec.Containers[i]
		env, _ := expandEnv(rc.Env)
		for _, e := range vc.Env {
			if e.Name != "JAVA_TOOL_OPTIONS" {
				if env[e.Name] != e.Value {
					is.add("vendor", "container %q: %s=%q, the vendor said %q", vc.Name, e.Name, env[e.Name], e.Value)
				}
				continue
			}
			got := strings.Fields(env[e.Name])
			for _, opt := range strings.Fields(e.Value) {
				if !slices.Contains(got, opt) {
					is.add("vendor", "container %q: JAVA_TOOL_OPTIONS lost the vendor's %s: %q", vc.Name, opt, env[e.Name])
				}
			}
		}
		for _, p := range [][2]*corev1.Probe{{vc.ReadinessProbe, rc.ReadinessProbe}, {vc.LivenessProbe, rc.LivenessProbe}, {vc.StartupProbe, rc.StartupProbe}} {
			if (p[0] == nil) != (p[1] == nil) || (p[0] != nil && p[0].String() != p[1].String()) {
				is.add("vendor", "container %q: a probe changed", vc.Name)
			}
		}
	}
}

// existingAppIssues runs every check on a render of the existing-app overlay, plus
// checkVendorKept against the vendor's file as it is on disk.
func existingAppIssues(t *testing.T, objs []object) issues {
	t.Helper()
	data, err := readFile(".", existingVendor)
	if err != nil {
		t.Fatal(err)
	}
	src, err := decodeStrict(existingVendor, data)
	if err != nil {
		t.Fatal(err)
	}
	is, pods := checkSet(objs, flagTwins())
	if pods != 1 {
		t.Fatalf("%d pod specs in the render, want 1", pods)
	}
	var vendor, rendered *appsv1.Deployment
	for _, o := range src {
		if d, ok := o.obj.(*appsv1.Deployment); ok {
			vendor = d
		}
	}
	for _, o := range objs {
		if d, ok := o.obj.(*appsv1.Deployment); ok {
			rendered = d
		}
	}
	checkVendorKept(vendor, rendered, &is)
	return is
}

// TestExistingAppChecksCatch edits the component, the vendor's manifests or the overlay one way
// at a time, renders with the real kustomize, and wants the matching rule to fire.
func TestExistingAppChecksCatch(t *testing.T) {
	replace := func(file, old, new string) func(map[string]string) {
		return func(files map[string]string) {
			if !strings.Contains(files[file], old) {
				t.Fatalf("%s has no %q", file, old)
			}
			files[file] = strings.ReplaceAll(files[file], old, new)
		}
	}
	const (
		appEnv   = sidecarComp + "/app-env.yaml"
		sidecarF = sidecarComp + "/sidecar.yaml"
		javaOpts = existingApp + "/java-options.yaml"
		kust     = existingApp + "/kustomization.yaml"
	)
	for _, tc := range []struct {
		name, want string
		edit       func(map[string]string)
	}{
		{"unchanged", "", func(map[string]string) {}},
		{"component's HTTP_PROXY over socks", "proxy-env", replace(appEnv,
			"- name: HTTP_PROXY\n              value: http://localhost:1080", "- name: HTTP_PROXY\n              value: socks5h://localhost:1080")},
		{"component's proxy URLs on 127.0.0.1", "proxy-env", replace(appEnv, "//localhost:1080", "//127.0.0.1:1080")},
		{"component without NO_PROXY", "proxy-env", replace(appEnv,
			"            - name: NO_PROXY\n              value: localhost,127.0.0.1,::1\n", "")},
		{"component's JVM options without SOCKS", "proxy-env", replace(appEnv, " -DsocksProxyHost=localhost -DsocksProxyPort=1080", "")},
		{"component's JAVA_TOOL_OPTIONS literal", "proxy-env", func(files map[string]string) {
			replace(appEnv, "value: $(NAT464_JAVA_PROXY_OPTS)", "value: -DsocksProxyHost=localhost")(files)
			replace(javaOpts, "value: $(NAT464_JAVA_PROXY_OPTS) -Xmx512m", "value: -DsocksProxyHost=localhost -Xmx512m")(files)
		}},
		{"component for another container name", "pss", replace(appEnv, "- name: app\n", "- name: main\n")},
		{"sidecar without restartPolicy", "sidecar", replace(sidecarF, "          restartPolicy: Always\n", "")},
		{"sidecar with a writable root", "hardening", replace(sidecarF, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")},
		{"sidecar on another port than the app's", "app-probe", replace(sidecarF, "--inbound=8080=", "--inbound=8081=")},
		{"vendor app on another port", "app-probe", replace(existingVendor, "port: 8080", "port: 9090")},
		{"vendor Service to an unmapped port", "service", replace(existingVendor, "targetPort: 8080", "targetPort: 9090")},
		{"vendor Deployment not labelled", "sidecar", replace(existingVendor,
			"    nat464.io/sidecar: enabled # added: selects this Deployment", "    # selects this Deployment")},
		{"vendor Service not labelled", "service", replace(existingVendor,
			"    nat464.io/sidecar: enabled # added: selects this Service", "    # selects this Service")},
		{"vendor JVM options not put back", "vendor", replace(kust, "patches:\n  - path: java-options.yaml\n", "")},
		{"vendor JVM options put back before the proxy's", "env", replace(javaOpts, "            - name: NAT464_JAVA_PROXY_OPTS\n", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := existingAppIssues(t, renderEdited(t, tc.edit))
			if tc.want == "" {
				for _, i := range is {
					t.Error(i)
				}
				return
			}
			if !slices.Contains(is.rules(), tc.want) {
				t.Errorf("rules %v, want %q", is.rules(), tc.want)
			}
		})
	}
}

// TestExistingAppOnDisk checks the overlay as kustomize renders it from disk: the vendor's
// variables, JVM options and probes survive, and the app's environment expands to the proxy.
func TestExistingAppOnDisk(t *testing.T) {
	objs, err := render(".", existingApp)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range existingAppIssues(t, objs) {
		t.Error(i)
	}
	for _, o := range objs {
		d, ok := o.obj.(*appsv1.Deployment)
		if !ok {
			continue
		}
		env, unresolved := expandEnv(d.Spec.Template.Spec.Containers[0].Env)
		opts := strings.Fields(env["JAVA_TOOL_OPTIONS"])
		if len(unresolved) > 0 || len(opts) < 2 || opts[len(opts)-2] != "-Xmx512m" || !slices.Contains(opts, "-DsocksProxyHost=localhost") {
			t.Errorf("JAVA_TOOL_OPTIONS expands to %q (unresolved %v), want the proxy's options, then the vendor's", env["JAVA_TOOL_OPTIONS"], unresolved)
		}
	}
}
