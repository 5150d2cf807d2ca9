package image

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
)

// Ref joins a repository and a version into a reference whose tag is valid: characters outside
// [A-Za-z0-9_.-] become '-', and the tag is at most 128 characters.
func Ref(name, version string) string {
	tag := []byte(cmp(version, "dev"))
	for i, c := range tag {
		ok := c == '_' || c == '.' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !ok || (i == 0 && (c == '.' || c == '-')) {
			tag[i] = '_'
			if i > 0 {
				tag[i] = '-'
			}
		}
	}
	if len(tag) > 128 {
		tag = tag[:128]
	}
	return cmp(name, DefaultName) + ":" + string(tag)
}

// WriteOCIArchive writes img as an OCI image layout packed into one tar file at path, the
// "oci-archive" format of skopeo and podman, which `docker load` also reads (Docker 25 and
// later). ref ("name:tag", see Ref) is recorded in index.json both as the OCI ref.name (the tag)
// and as io.containerd.image.name (the whole reference, which docker load tags the image with).
// The tar's entries are stamped with mtime, so equal images give byte-identical files.
func WriteOCIArchive(path string, img v1.Image, ref string, mtime time.Time) error {
	dir, err := os.MkdirTemp("", "mkimage-layout-")
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image: layout: %w", err)
	}
	if err := p.WriteImage(img); err != nil {
		return fmt.Errorf("image: layout: %w", err)
	}
	desc, err := indexDescriptor(img, ref)
	if err != nil {
		return err
	}
	if err := p.AppendDescriptor(*desc); err != nil {
		return fmt.Errorf("image: layout: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".mkimage-*.tar")
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := packDir(tmp, dir, mtime); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return nil
}

// indexDescriptor describes img for index.json: its platform and names, and no artifactType
// (which go-containerregistry fills from the config type but OCI reserves for artifacts).
func indexDescriptor(img v1.Image, ref string) (*v1.Descriptor, error) {
	desc, err := partial.Descriptor(img)
	if err != nil {
		return nil, fmt.Errorf("image: layout: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: layout: %w", err)
	}
	desc.ArtifactType = ""
	desc.Platform = &v1.Platform{OS: cf.OS, Architecture: cf.Architecture}
	desc.Annotations = map[string]string{
		"org.opencontainers.image.ref.name": ref[strings.LastIndex(ref, ":")+1:],
		"io.containerd.image.name":          ref,
	}
	return desc, nil
}

// packDir writes the tree under dir to w as a tar in lexical order, every entry owned by root
// with a fixed mode and mtime.
func packDir(w io.Writer, dir string, mtime time.Time) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Format: tar.FormatUSTAR}
		switch {
		case d.IsDir():
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			return tw.WriteHeader(h)
		case d.Type().IsRegular():
			h.Typeflag, h.Mode = tar.TypeReg, 0o644
		default:
			return fmt.Errorf("image: layout: %s is not a regular file", rel)
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		h.Size = st.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("image: pack layout: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("image: pack layout: %w", err)
	}
	return nil
}
