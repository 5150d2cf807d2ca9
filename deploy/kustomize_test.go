package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomization reads and strictly decodes the kustomization file at rel (relative to root).
func kustomization(root, rel string) (*types.Kustomization, error) {
	data, err := readFile(root, rel)
	if err != nil {
		return nil, err
	}
	k := &types.Kustomization{}
	if err := yaml.UnmarshalStrict(data, k); err != nil {
		return nil, fmt.Errorf("%s: strict decode: %w", rel, err)
	}
	if k.Kind != "" && k.Kind != types.KustomizationKind && k.Kind != types.ComponentKind {
		return nil, fmt.Errorf("%s: kind %q, want %s or %s", rel, k.Kind, types.KustomizationKind, types.ComponentKind)
	}
	return k, nil
}

// checkKustomization verifies that everything a kustomization names exists: resources (a file, or
// a directory holding a kustomization), components, and patch files; remote bases are refused so
// the manifests stay reviewable. It returns the patch files it names, relative to root.
func checkKustomization(root, rel string) (patches []string, err error) {
	k, err := kustomization(root, rel)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(rel)
	local := func(what, p string, wantDir bool) (string, error) {
		if strings.Contains(p, "://") || strings.HasPrefix(p, "github.com/") {
			return "", fmt.Errorf("%s: %s %q is remote; only local paths are allowed", rel, what, p)
		}
		full := filepath.Join(dir, p)
		st, err := os.Stat(filepath.Join(root, full))
		if err != nil {
			return "", fmt.Errorf("%s: %s %q: %w", rel, what, p, err)
		}
		if st.IsDir() {
			if !hasKustomization(filepath.Join(root, full)) {
				return "", fmt.Errorf("%s: %s %q is a directory without a kustomization", rel, what, p)
			}
		} else if wantDir {
			return "", fmt.Errorf("%s: %s %q is not a directory", rel, what, p)
		}
		return full, nil
	}
	for _, r := range k.Resources {
		if _, err := local("resource", r, false); err != nil {
			return nil, err
		}
	}
	for _, c := range k.Components {
		if _, err := local("component", c, true); err != nil {
			return nil, err
		}
	}
	for i, p := range k.Patches {
		if p.Path == "" && p.Patch == "" {
			return nil, fmt.Errorf("%s: patch %d has neither path nor patch", rel, i)
		}
		if p.Path != "" {
			full, err := local("patch", p.Path, false)
			if err != nil {
				return nil, err
			}
			patches = append(patches, full)
		}
	}
	for _, p := range k.PatchesStrategicMerge {
		full, err := local("patchesStrategicMerge entry", string(p), false)
		if err != nil {
			return nil, err
		}
		patches = append(patches, full)
	}
	for _, p := range k.PatchesJson6902 {
		full, err := local("patchesJson6902 entry", p.Path, false)
		if err != nil {
			return nil, err
		}
		patches = append(patches, full)
	}
	return patches, nil
}

// isComponent reports whether the kustomization at rel is a Component: it is built only as part
// of a kustomization that lists it (kustomize refuses to build one alone).
func isComponent(root, rel string) bool {
	k, err := kustomization(root, rel)
	return err == nil && k.Kind == types.ComponentKind
}

func hasKustomization(dir string) bool {
	for _, n := range []string{"kustomization.yaml", "kustomization.yml", "Kustomization"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return false
}

// render builds the kustomization in dir (relative to root) with the kustomize library, the
// same code as `kubectl kustomize`, and decodes the result strictly.
func render(root, dir string) ([]object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(root, dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return decodeStrict(dir+" (rendered)", out)
}
