package deploy

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/nat464/nat464-sidecar/deploy/image"
)

// dockerInstructions returns the Dockerfile's instructions (continuations joined, comments and
// parser directives dropped) as [keyword, rest] pairs.
func dockerInstructions(text string) [][2]string {
	var out [][2]string
	var cur string
	for _, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if cur == "" && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if strings.HasSuffix(t, "\\") {
			cur += strings.TrimSuffix(t, "\\") + " "
			continue
		}
		cur += t
		kw, rest, _ := strings.Cut(cur, " ")
		out = append(out, [2]string{strings.ToUpper(kw), strings.TrimSpace(rest)})
		cur = ""
	}
	return out
}

// TestDockerfile holds the Dockerfile (which needs an engine, so CI cannot build it) to the
// same image that mkimage builds and the tests check: identity, entrypoint, ports, a static
// stamped build, and dependencies downloaded in their own layer.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	ins := dockerInstructions(string(data))
	var froms, users, entrypoints, exposes []string
	download, copyAll, build := -1, -1, ""
	for i, in := range ins {
		switch in[0] {
		case "FROM":
			froms = append(froms, in[1])
		case "USER":
			users = append(users, in[1])
		case "ENTRYPOINT":
			entrypoints = append(entrypoints, in[1])
		case "EXPOSE":
			exposes = append(exposes, strings.Fields(in[1])...)
		case "RUN":
			if strings.Contains(in[1], "go mod download") {
				download = i
			}
			if strings.Contains(in[1], "go build") {
				build = in[1]
			}
		case "COPY":
			if strings.HasSuffix(in[1], ". .") {
				copyAll = i
			}
		}
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:") ||
		froms[1] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("FROM %q: want a golang builder stage and distroless static nonroot", froms)
	}
	if !slices.Equal(users, []string{image.User}) {
		t.Errorf("USER %q, want exactly %q (numeric: runAsNonRoot cannot check a name)", users, image.User)
	}
	if !slices.Equal(entrypoints, []string{`["` + image.Entrypoint + `"]`}) {
		t.Errorf("ENTRYPOINT %q, want [%q]", entrypoints, image.Entrypoint)
	}
	var want []string
	for _, p := range image.ExposedPorts {
		want = append(want, strings.TrimSuffix(p, "/tcp"))
	}
	slices.Sort(want)
	slices.Sort(exposes)
	if !slices.Equal(exposes, want) {
		t.Errorf("EXPOSE %q, want %q as mkimage", exposes, want)
	}
	if download < 0 || copyAll < 0 || download > copyAll {
		t.Errorf("want `go mod download` in its own layer before `COPY . .`")
	}
	for _, s := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "./cmd/nat464-sidecar"} {
		if !strings.Contains(build, s) {
			t.Errorf("the go build step lacks %q: %s", s, build)
		}
	}
}
