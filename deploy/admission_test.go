package deploy

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// collection is the API path objects of obj's type are created at; namespaced ones in ns.
func collection(obj any, ns string) (string, error) {
	switch obj.(type) {
	case *corev1.Namespace:
		return "/api/v1/namespaces", nil
	case *corev1.Pod:
		return "/api/v1/namespaces/" + ns + "/pods", nil
	case *corev1.Service:
		return "/api/v1/namespaces/" + ns + "/services", nil
	case *corev1.ConfigMap:
		return "/api/v1/namespaces/" + ns + "/configmaps", nil
	case *appsv1.Deployment:
		return "/apis/apps/v1/namespaces/" + ns + "/deployments", nil
	case *admissionregistrationv1.MutatingWebhookConfiguration:
		return "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", nil
	}
	return "", fmt.Errorf("no API path for %T", obj)
}

// inNamespace returns a copy of a namespaced object moved to ns (a cluster-scoped one as it is).
func inNamespace(obj any, ns string) any {
	switch obj.(type) {
	case *corev1.Namespace, *admissionregistrationv1.MutatingWebhookConfiguration:
		return obj
	}
	if o, ok := obj.(runtime.Object); ok {
		c := o.DeepCopyObject()
		if m, ok := c.(metav1.Object); ok {
			m.SetNamespace(ns)
			return c
		}
	}
	return obj
}

// admit creates obj as a dry run (everything but the write to etcd: defaulting, strict field
// validation, every admission plugin) and returns the status and body (plus any Warning
// headers, where PodSecurity reports what a Deployment's pods would violate).
func (s *apiServer) admit(t *testing.T, obj any) (int, string) {
	t.Helper()
	path, err := collection(obj, testNamespace)
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := s.do(context.Background(), "POST", path+"?dryRun=All&fieldValidation=Strict", inNamespace(obj, testNamespace))
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

// restrictedNamespace creates the tests' namespace (for real) with Pod Security's restricted
// level enforced at the latest version, and its default ServiceAccount (no controller manager
// runs to create it, and the ServiceAccount admission plugin wants it).
func (s *apiServer) restrictedNamespace(t *testing.T) {
	t.Helper()
	ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: testNamespace, Labels: map[string]string{
			"pod-security.kubernetes.io/enforce":         "restricted",
			"pod-security.kubernetes.io/enforce-version": "latest",
		}}}
	sa := &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: testNamespace}}
	for _, c := range []struct {
		path string
		obj  any
	}{{"/api/v1/namespaces", ns}, {"/api/v1/namespaces/" + testNamespace + "/serviceaccounts", sa}} {
		code, body, err := s.do(context.Background(), "POST", c.path, c.obj)
		if err != nil || (code != http.StatusCreated && code != http.StatusConflict) {
			t.Fatalf("POST %s: %d %s %v", c.path, code, body, err)
		}
	}
}

// podOf is a Pod with a Deployment's pod template, as its ReplicaSet would create it: the pod
// is what PodSecurity enforces on (for the Deployment itself it only warns).
func podOf(d *appsv1.Deployment) *corev1.Pod {
	tpl := d.Spec.Template.DeepCopy()
	return &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: d.Name + "-", Labels: tpl.Labels, Annotations: tpl.Annotations},
		Spec:       tpl.Spec}
}

// TestAdmission: every manifest and every kustomize rendering under deploy/ is accepted by a
// real kube-apiserver, strict field validation on, in a namespace enforcing the restricted Pod
// Security level; each Deployment's pod template is also created as a Pod, so the PodSecurity
// plugin enforces on it rather than warns; and no warning comes back.
func TestAdmission(t *testing.T) {
	s := requireAPIServer(t)
	s.restrictedNamespace(t)
	sets := manifestSets(t, ".")
	pods := 0
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		t.Run(name, func(t *testing.T) {
			for _, o := range sets[name] {
				switch o.obj.(type) {
				case *certManagerIssuer, *certManagerCertificate:
					// cert-manager's CRDs are not installed in the test API server; their
					// fields are held to the types in load_test.go instead.
					continue
				}
				objs := []any{o.obj}
				if d, ok := o.obj.(*appsv1.Deployment); ok {
					objs = append(objs, podOf(d))
				}
				for _, obj := range objs {
					if _, ok := obj.(*corev1.Pod); ok {
						pods++
					}
					code, body := s.admit(t, obj)
					if code != http.StatusCreated && code != http.StatusOK {
						t.Errorf("%s (%T): refused, %d: %s", o.src, obj, code, body)
					} else if strings.Contains(body, "Warning:") {
						t.Errorf("%s (%T): admitted with a warning: %s", o.src, obj, body[strings.Index(body, "Warning:"):])
					}
				}
			}
		})
	}
	if pods < 4 {
		t.Errorf("admitted %d pods, want at least 4 (base, overlays, the example): are manifests missing?", pods)
	}
}

// TestAdmissionRefuses: broken copies of the base Deployment's pod, one fault each, are refused
// by the same server, so TestAdmission's acceptance means something.
func TestAdmissionRefuses(t *testing.T) {
	s := requireAPIServer(t)
	s.restrictedNamespace(t)
	objs, err := render(".", "base")
	if err != nil {
		t.Fatal(err)
	}
	var base *corev1.Pod
	for _, o := range objs {
		if d, ok := o.obj.(*appsv1.Deployment); ok {
			base = podOf(d)
		}
	}
	if base == nil {
		t.Fatal("no Deployment in the base rendering")
	}
	sidecar := func(p *corev1.Pod) *corev1.Container {
		for i := range p.Spec.InitContainers {
			if isSidecar(&p.Spec.InitContainers[i]) {
				return &p.Spec.InitContainers[i]
			}
		}
		t.Fatal("no sidecar in the base pod")
		return nil
	}
	if code, body := s.admit(t, base); code != http.StatusCreated {
		t.Fatalf("the unbroken base pod is refused: %d %s", code, body)
	}
	for _, tc := range []struct {
		fault string
		want  string // in the refusal
		edit  func(p *corev1.Pod)
	}{
		{"the sidecar adds NET_ADMIN", "violates PodSecurity", func(p *corev1.Pod) {
			c := sidecar(p)
			c.SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}},
		{"the sidecar may run as root", "violates PodSecurity", func(p *corev1.Pod) {
			f := false
			sidecar(p).SecurityContext.RunAsNonRoot = &f
			p.Spec.SecurityContext.RunAsNonRoot = &f
		}},
		{"the pod uses the host network", "violates PodSecurity", func(p *corev1.Pod) { p.Spec.HostNetwork = true }},
		{"an unsafe sysctl", "violates PodSecurity", func(p *corev1.Pod) {
			p.Spec.SecurityContext.Sysctls = append(p.Spec.SecurityContext.Sysctls, corev1.Sysctl{Name: "net.core.somaxconn", Value: "1024"})
		}},
		{"a probe with host", "host", func(p *corev1.Pod) {
			c := sidecar(p)
			if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil {
				t.Fatal("the sidecar has no HTTP liveness probe to break")
			}
			c.LivenessProbe.HTTPGet.Host = "192.0.2.1"
		}},
		{"an unknown imagePullPolicy", "imagePullPolicy", func(p *corev1.Pod) { sidecar(p).ImagePullPolicy = "Sometimes" }},
		{"dnsPolicy None without a nameserver", "nameserver", func(p *corev1.Pod) {
			p.Spec.DNSPolicy, p.Spec.DNSConfig = corev1.DNSNone, &corev1.PodDNSConfig{}
		}},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			p := base.DeepCopy()
			tc.edit(p)
			code, body := s.admit(t, p)
			if code == http.StatusCreated || code == http.StatusOK {
				t.Fatalf("admitted, want refused")
			}
			if !strings.Contains(body, tc.want) {
				t.Errorf("refused (%d) without naming %q: %s", code, tc.want, body)
			}
		})
	}
}
