// Package image builds the nat464-sidecar container image without a Docker engine: an empty base,
// one layer holding the static binary plus minimal /etc/passwd and /etc/group, and an OCI config
// that runs it as 65532:65532. Timestamps come from SOURCE_DATE_EPOCH (or the Unix epoch), so the
// same binary always gives the same digest. It writes OCI image layouts; it never pushes.
package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image runs, and as whom. The Dockerfile says the same.
const (
	Entrypoint = "/nat464-sidecar"
	// Injector is where the image holds nat464-injector, when built with one (its Deployment
	// runs it as the command).
	Injector = "/nat464-injector"
	User     = "65532:65532"
	// DefaultName is the repository written into the layout's annotations.
	DefaultName = "ghcr.io/nat464/nat464-sidecar"
	// DefaultSource is the org.opencontainers.image.source label.
	DefaultSource = "https://github.com/nat464/nat464-sidecar"
	// DefaultLicenses is the SPDX "unknown" value, used until the project states a licence.
	DefaultLicenses = "NOASSERTION"
)

// ExposedPorts are the default inbound, proxy and admin ports (documentation only).
var ExposedPorts = []string{"8080/tcp", "1080/tcp", "9464/tcp"}

// Errors Build wraps.
var (
	ErrNotELF    = errors.New("image: binary is not an ELF executable")
	ErrNotStatic = errors.New("image: binary is dynamically linked (build it with CGO_ENABLED=0)")
	ErrArch      = errors.New("image: binary's machine type has no OCI architecture")
)

// Options describe the image. Only Binary is required.
type Options struct {
	// Binary is the path of the static nat464-sidecar executable.
	Binary string
	// InjectorBinary, if set, is the path of the static nat464-injector executable, added as
	// Injector (same architecture as Binary).
	InjectorBinary string
	// Version labels the image; if empty, "dev".
	Version string
	// Revision, if set, becomes the org.opencontainers.image.revision label.
	Revision string
	// Source is the source repository label; if empty, DefaultSource.
	Source string
	// Licenses is the SPDX licence expression label; if empty, DefaultLicenses.
	Licenses string
	// Created stamps files, history and config; if zero, the Unix epoch (see SourceDateEpoch).
	Created time.Time
}

func (o Options) version() string  { return cmp(o.Version, "dev") }
func (o Options) source() string   { return cmp(o.Source, DefaultSource) }
func (o Options) licenses() string { return cmp(o.Licenses, DefaultLicenses) }

func (o Options) created() time.Time {
	if o.Created.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return o.Created.UTC().Truncate(time.Second)
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// SourceDateEpoch reads SOURCE_DATE_EPOCH (reproducible-builds.org) through getenv; unset or
// empty means the Unix epoch.
func SourceDateEpoch(getenv func(string) string) (time.Time, error) {
	v := strings.TrimSpace(getenv("SOURCE_DATE_EPOCH"))
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("image: SOURCE_DATE_EPOCH=%q: want seconds since 1970", v)
	}
	return time.Unix(n, 0).UTC(), nil
}

// Build assembles the image from a static binary.
func Build(o Options) (v1.Image, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	arch, err := inspectBinary(bytes.NewReader(bin))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, o.Binary)
	}
	var inj []byte
	if o.InjectorBinary != "" {
		if inj, err = os.ReadFile(o.InjectorBinary); err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
		injArch, err := inspectBinary(bytes.NewReader(inj))
		if err != nil {
			return nil, fmt.Errorf("%w: %s", err, o.InjectorBinary)
		}
		if injArch != arch {
			return nil, fmt.Errorf("%w: %s is %s, %s is %s", ErrArch, o.InjectorBinary, injArch, o.Binary, arch)
		}
	}
	layerTar, err := rootfs(bin, inj, o.created())
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, configFile(o, arch))
	if err != nil {
		return nil, fmt.Errorf("image: config: %w", err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: o.created()},
			CreatedBy: createdBy(inj != nil),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("image: append layer: %w", err)
	}
	return img, nil
}

func configFile(o Options, arch string) *v1.ConfigFile {
	ports := map[string]struct{}{}
	for _, p := range ExposedPorts {
		ports[p] = struct{}{}
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "nat464-sidecar",
		"org.opencontainers.image.description": "Bridges IPv4-only apps into IPv6-only Kubernetes pods",
		"org.opencontainers.image.version":     o.version(),
		"org.opencontainers.image.source":      o.source(),
		"org.opencontainers.image.licenses":    o.licenses(),
		"org.opencontainers.image.created":     o.created().Format(time.RFC3339),
	}
	if o.Revision != "" {
		labels["org.opencontainers.image.revision"] = o.Revision
	}
	return &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      v1.Time{Time: o.created()},
		Config: v1.Config{
			Entrypoint:   []string{Entrypoint},
			User:         User,
			WorkingDir:   "/",
			ExposedPorts: ports,
			Labels:       labels,
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
}

// Files of the layer besides the binary: just enough for tools that map uids to names.
const (
	etcPasswd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	etcGroup = "root:x:0:\nnonroot:x:65532:\n"
)

// rootfs returns the layer's uncompressed tar: every entry owned by root, stamped with mtime.
func createdBy(injector bool) string {
	if injector {
		return "mkimage: " + Entrypoint + ", " + Injector + ", /etc/passwd, /etc/group"
	}
	return "mkimage: " + Entrypoint + ", /etc/passwd, /etc/group"
}

func rootfs(bin, injector []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []struct {
		name string
		mode int64
		body []byte
	}{
		{"etc/", 0o755, nil},
		{"etc/group", 0o644, []byte(etcGroup)},
		{"etc/passwd", 0o644, []byte(etcPasswd)},
		{strings.TrimPrefix(Entrypoint, "/"), 0o555, bin},
	}
	if injector != nil {
		entries = append(entries, struct {
			name string
			mode int64
			body []byte
		}{strings.TrimPrefix(Injector, "/"), 0o555, injector})
	}
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Size:    int64(len(e.body)),
			ModTime: mtime,
			Format:  tar.FormatUSTAR,
		}
		h.Typeflag = tar.TypeReg
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: layer %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, fmt.Errorf("image: layer %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return buf.Bytes(), nil
}
