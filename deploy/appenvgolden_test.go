package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// appEnvGolden is the base Deployment's app environment as kubelet hands it to the process
// ($(VAR) expanded), one NAME=VALUE a line. The lab's client matrix (test/e2e,
// TestClientMatrix) runs the clients with exactly these variables, so the manifests'
// environment is measured, not only the README's settings.
const appEnvGolden = "testdata/app-env.golden"

// TestAppEnvGolden keeps appEnvGolden equal to deploy/base/deployment.yaml's app container.
// NAT464_UPDATE_GOLDEN=1 rewrites it.
func TestAppEnvGolden(t *testing.T) {
	data, err := readFile(".", "base/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeStrict("base/deployment.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	pods, _ := podsAndServices(objs)
	var got []string
	for _, p := range pods {
		for _, c := range p.spec.Containers {
			if c.Name != "app" {
				continue
			}
			env, unresolved := expandEnv(c.Env)
			if len(unresolved) > 0 {
				t.Fatalf("unresolved references: %v", unresolved)
			}
			for k, v := range env {
				if strings.ContainsAny(v, "\n") {
					t.Fatalf("%s has a newline", k)
				}
				got = append(got, k+"="+v)
			}
		}
	}
	if len(got) == 0 {
		t.Fatal("no app container in deploy/base")
	}
	slices.Sort(got)
	text := "# deploy/base/deployment.yaml's app environment after $(VAR) expansion (TestAppEnvGolden)\n" + strings.Join(got, "\n") + "\n"
	if os.Getenv("NAT464_UPDATE_GOLDEN") == "1" {
		if err := os.MkdirAll(filepath.Dir(appEnvGolden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(appEnvGolden, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(appEnvGolden)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != text {
		t.Errorf("%s is stale (NAT464_UPDATE_GOLDEN=1 rewrites it); want:\n%s", appEnvGolden, text)
	}
}
