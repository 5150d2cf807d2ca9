package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// object is one decoded YAML document: a pointer to a k8s.io/api type.
type object struct {
	src string // "file.yaml#2": file relative to deploy/, document index from 0
	obj any
}

// kinds maps apiVersion/kind to a constructor of the typed object. A document of any other kind
// fails the test: every manifest here must be understood.
var kinds = map[string]func() any{
	"v1/Pod":             func() any { return &corev1.Pod{} },
	"v1/Service":         func() any { return &corev1.Service{} },
	"v1/Namespace":       func() any { return &corev1.Namespace{} },
	"v1/ConfigMap":       func() any { return &corev1.ConfigMap{} },
	"apps/v1/Deployment": func() any { return &appsv1.Deployment{} },
	"admissionregistration.k8s.io/v1/MutatingWebhookConfiguration": func() any {
		return &admissionregistrationv1.MutatingWebhookConfiguration{}
	},
	"cert-manager.io/v1/Issuer":      func() any { return &certManagerIssuer{} },
	"cert-manager.io/v1/Certificate": func() any { return &certManagerCertificate{} },
}

// certManagerIssuer and certManagerCertificate are the fields of cert-manager's CRDs the
// injector's manifests use (cert-manager.io/v1), decoded as strictly as the built-in kinds: a
// field spelled wrong fails the test. (Not the cert-manager module: it would pull in far more
// than two types.)
type certManagerIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
	} `json:"spec"`
}

type certManagerCertificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName  string           `json:"secretName"`
		DNSNames    []string         `json:"dnsNames"`
		Duration    *metav1.Duration `json:"duration,omitempty"`
		RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
		IssuerRef   struct {
			Name  string `json:"name"`
			Kind  string `json:"kind"`
			Group string `json:"group,omitempty"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

// isKustomization reports whether a file name is one kustomize reads as its configuration.
func isKustomization(path string) bool {
	switch filepath.Base(path) {
	case "kustomization.yaml", "kustomization.yml", "Kustomization":
		return true
	}
	return false
}

// yamlFiles lists every *.yaml / *.yml file under root (relative paths, sorted).
func yamlFiles(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// monitoring/ holds a PrometheusRule, a Prometheus rules file and promtool's tests,
		// not workloads: monitoring_test.go checks them.
		if d.IsDir() && p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == monitoringDir) {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// splitDocs returns the non-empty YAML documents of data.
func splitDocs(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSON(d)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(j)); s == "null" || s == "" {
			continue // only comments or an empty document
		}
		docs = append(docs, d)
	}
}

// decodeStrict decodes every document of data into its k8s.io/api type, refusing unknown and
// duplicate fields.
func decodeStrict(src string, data []byte) ([]object, error) {
	docs, err := splitDocs(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	var out []object
	for i, d := range docs {
		name := fmt.Sprintf("%s#%d", src, i)
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(d, &tm); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		mk, ok := kinds[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			return nil, fmt.Errorf("%s: unexpected apiVersion/kind %q/%q", name, tm.APIVersion, tm.Kind)
		}
		obj := mk()
		if err := yaml.UnmarshalStrict(d, obj); err != nil {
			return nil, fmt.Errorf("%s: strict decode of %s: %w", name, tm.Kind, err)
		}
		out = append(out, object{src: name, obj: obj})
	}
	return out, nil
}

// jsonPatchOp is one RFC 6902 operation, as kustomize reads it from a patch file.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	From  string `json:"from,omitempty"`
	Value any    `json:"value,omitempty"`
}

// decodePatch decodes a patch file strictly: either a JSON patch (a YAML list of operations) or a
// strategic merge patch (a partial object of a known kind).
func decodePatch(src string, data []byte) error {
	if j, err := yaml.YAMLToJSON(data); err == nil && bytes.HasPrefix(bytes.TrimSpace(j), []byte("[")) {
		var ops []jsonPatchOp
		if err := yaml.UnmarshalStrict(data, &ops); err != nil {
			return fmt.Errorf("%s: strict decode of JSON patch: %w", src, err)
		}
		for i, op := range ops {
			switch op.Op {
			case "add", "remove", "replace", "move", "copy", "test":
			default:
				return fmt.Errorf("%s: operation %d: unknown op %q", src, i, op.Op)
			}
			if !strings.HasPrefix(op.Path, "/") {
				return fmt.Errorf("%s: operation %d: path %q is not a JSON pointer", src, i, op.Path)
			}
		}
		return nil
	}
	// A strategic merge patch may carry directives ($patch: delete, $retainKeys, ...), which are
	// not fields of the object: the rest must still decode strictly.
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	clean, err := yaml.Marshal(withoutDirectives(doc))
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	_, err = decodeStrict(src, clean)
	return err
}

// withoutDirectives is v less every map key that starts with "$" (strategic merge directives).
func withoutDirectives(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			if !strings.HasPrefix(k, "$") {
				out[k] = withoutDirectives(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = withoutDirectives(e)
		}
		return out
	}
	return v
}

// podTemplate is a pod spec found in a manifest, with where it came from.
type podTemplate struct {
	src       string
	namespace string
	labels    map[string]string
	meta      *metav1.ObjectMeta // the Pod's, or the template's (Pod Security reads its annotations)
	spec      *corev1.PodSpec
}

// podsAndServices picks the pod specs (Pods, Deployment templates) and Services out of objs.
func podsAndServices(objs []object) ([]podTemplate, []*corev1.Service) {
	var pods []podTemplate
	var svcs []*corev1.Service
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *corev1.Pod:
			pods = append(pods, podTemplate{o.src, v.Namespace, v.Labels, &v.ObjectMeta, &v.Spec})
		case *appsv1.Deployment:
			pods = append(pods, podTemplate{o.src, v.Namespace, v.Spec.Template.Labels, &v.Spec.Template.ObjectMeta, &v.Spec.Template.Spec})
		case *corev1.Service:
			svcs = append(svcs, v)
		}
	}
	return pods, svcs
}

// readFile reads a file relative to the deploy directory.
func readFile(root, rel string) ([]byte, error) {
	return os.ReadFile(filepath.Join(root, rel))
}
