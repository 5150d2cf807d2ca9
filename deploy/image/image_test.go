package image

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestImage builds the image of the real sidecar binary and checks what a container runtime and
// Kubernetes' runAsNonRoot will see: identity, entrypoint, labels, and a root filesystem with the
// static binary, passwd/group entries and nothing else (no shell, no /bin).
func TestImage(t *testing.T) {
	bin := sidecarBinary(t)
	binBytes, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	path, _ := buildArchive(t, Options{Binary: bin, Version: testVersion, Revision: "abc123"}, t.TempDir(), "oci.tar")
	desc, img := openArchive(t, path)

	if got := desc.Annotations["io.containerd.image.name"]; got != DefaultName+":"+testVersion {
		t.Errorf("io.containerd.image.name = %q", got)
	}
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != testVersion {
		t.Errorf("org.opencontainers.image.ref.name = %q", got)
	}
	if desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != runtime.GOARCH {
		t.Errorf("index platform = %+v, want linux/%s", desc.Platform, runtime.GOARCH)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" {
		t.Errorf("User = %q, want numeric 65532:65532 (runAsNonRoot cannot check a name)", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/nat464-sidecar"}) || len(c.Cmd) != 0 {
		t.Errorf("Entrypoint %q Cmd %q", c.Entrypoint, c.Cmd)
	}
	if len(c.Env) != 0 {
		t.Errorf("Env = %q, want none", c.Env)
	}
	for _, p := range []string{"8080/tcp", "1080/tcp", "9464/tcp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed", p)
		}
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.title":    "nat464-sidecar",
		"org.opencontainers.image.version":  testVersion,
		"org.opencontainers.image.source":   DefaultSource,
		"org.opencontainers.image.licenses": DefaultLicenses,
		"org.opencontainers.image.revision": "abc123",
		"org.opencontainers.image.created":  "1970-01-01T00:00:00Z",
	} {
		if c.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], want)
		}
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || !cf.Created.Equal(time.Unix(0, 0)) {
		t.Errorf("config os/arch/created = %s/%s/%v", cf.OS, cf.Architecture, cf.Created)
	}

	files := layerFiles(t, img)
	names := slices.Sorted(maps.Keys(files))
	if want := []string{"etc/", "etc/group", "etc/passwd", "nat464-sidecar"}; !slices.Equal(names, want) {
		t.Errorf("layer holds %q, want exactly %q (no shell, no /bin, no /usr/bin)", names, want)
	}
	for _, n := range names {
		if strings.HasPrefix(n, "bin") || strings.HasPrefix(n, "usr/") || strings.HasSuffix(n, "/sh") {
			t.Errorf("layer has %s", n)
		}
	}
	for n, want := range map[string]int64{"etc/": 0o755, "etc/group": 0o644, "etc/passwd": 0o644, "nat464-sidecar": 0o555} {
		h := files[n].hdr
		if h == nil {
			continue
		}
		if h.Uid != 0 || h.Gid != 0 || h.Mode != want {
			t.Errorf("%s: uid %d gid %d mode %o, want root:root %o", n, h.Uid, h.Gid, h.Mode, want)
		}
		if !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: mtime %v, want the epoch", n, h.ModTime)
		}
	}
	if !bytes.Contains(files["etc/passwd"].body, []byte("\nnonroot:x:65532:65532:")) ||
		!bytes.HasPrefix(files["etc/passwd"].body, []byte("root:x:0:0:")) {
		t.Errorf("/etc/passwd = %q", files["etc/passwd"].body)
	}
	if !bytes.Contains(files["etc/group"].body, []byte("nonroot:x:65532:")) {
		t.Errorf("/etc/group = %q", files["etc/group"].body)
	}
	got := files["nat464-sidecar"].body
	if !bytes.Equal(got, binBytes) {
		t.Fatalf("layer binary differs from the input (%d vs %d bytes)", len(got), len(binBytes))
	}
	assertStatic(t, got)
}

// assertStatic checks the ELF itself, independently of inspectBinary.
func assertStatic(t *testing.T, b []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: not static", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary needs %v", libs)
	}
}

// TestReproducible wants byte-identical archives from the same inputs, and SOURCE_DATE_EPOCH to
// be the only clock that reaches the image.
func TestReproducible(t *testing.T) {
	bin := sidecarBinary(t)
	dir := t.TempDir()
	digestOf := func(name string, epoch time.Time) (string, [32]byte) {
		path, img := buildArchive(t, Options{Binary: bin, Version: testVersion, Created: epoch}, dir, name)
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return d.String(), sha256.Sum256(data)
	}
	d1, f1 := digestOf("a.tar", time.Time{})
	d2, f2 := digestOf("b.tar", time.Time{})
	if d1 != d2 || f1 != f2 {
		t.Errorf("two builds differ: digests %s %s", d1, d2)
	}
	d3, _ := digestOf("c.tar", time.Unix(1700000000, 0))
	d4, _ := digestOf("d.tar", time.Unix(1700000000, 0))
	if d3 == d1 || d3 != d4 {
		t.Errorf("SOURCE_DATE_EPOCH not applied deterministically: %s %s %s", d1, d3, d4)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".mkimage-*")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %q", leftovers)
	}
}

func TestBuildRejects(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		want       error
	}{
		{"missing", filepath.Join(dir, "nope"), fs.ErrNotExist},
		{"shell script", text, ErrNotELF},
		{"dynamic", dynamicBinary(t), ErrNotStatic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.path == "" {
				t.Skip("no dynamically linked executable found on this machine")
			}
			_, err := Build(Options{Binary: tt.path})
			if !errors.Is(err, tt.want) {
				t.Errorf("Build(%s) = %v, want %v", tt.path, err, tt.want)
			}
		})
	}
}

// dynamicBinary finds a dynamically linked executable on the machine ("" if none).
func dynamicBinary(t *testing.T) string {
	for _, p := range []string{"/bin/true", "/usr/bin/true", "/bin/ls", "/usr/bin/env"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		libs, _ := f.ImportedLibraries()
		f.Close()
		if len(libs) > 0 {
			return p
		}
	}
	return ""
}

// TestImageWithInjector: -injector adds /nat464-injector beside the sidecar, byte for byte,
// root-owned 0555; the entrypoint stays the sidecar's.
func TestImageWithInjector(t *testing.T) {
	bin := sidecarBinary(t)
	inj := filepath.Join(t.TempDir(), "nat464-injector")
	b, err := os.ReadFile(bin) // any static binary of the same architecture stands in
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(inj, b, 0o755)
	path, _ := buildArchive(t, Options{Binary: bin, InjectorBinary: inj, Version: testVersion}, t.TempDir(), "oci.tar")
	_, img := openArchive(t, path)
	files := layerFiles(t, img)
	if want := []string{"etc/", "etc/group", "etc/passwd", "nat464-injector", "nat464-sidecar"}; !slices.Equal(slices.Sorted(maps.Keys(files)), want) {
		t.Errorf("layer holds %q, want %q", slices.Sorted(maps.Keys(files)), want)
	}
	if f := files["nat464-injector"]; f.hdr == nil || f.hdr.Mode != 0o555 || f.hdr.Uid != 0 || !bytes.Equal(f.body, b) {
		t.Errorf("nat464-injector in the layer: %+v", f.hdr)
	}
	cf, _ := img.ConfigFile()
	if !slices.Equal(cf.Config.Entrypoint, []string{Entrypoint}) {
		t.Errorf("entrypoint %q", cf.Config.Entrypoint)
	}
	if _, err := Build(Options{Binary: bin, InjectorBinary: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("a missing injector binary was accepted")
	}
}
