package deploy

import (
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/nat464/nat464-sidecar/policy"
)

// checkEgressPolicy holds a sidecar with --egress-policy to what a reloadable policy needs: the
// file's directory mounted from a ConfigMap volume without subPath (a subPath mount is never
// updated by the kubelet, so edits would need a restart), and, when that ConfigMap is in the
// same set, a key of the file's name that the sidecar's own parser accepts.
func checkEgressPolicy(objs []object, sc sidecar, spec *corev1.PodSpec, is *issues) {
	path := sc.cfg.EgressPolicy
	dir, key := filepath.Dir(path), filepath.Base(path)
	var cm *corev1.ConfigMapVolumeSource
	for _, m := range sc.c.VolumeMounts {
		if m.MountPath != dir && m.MountPath != path {
			continue
		}
		if m.SubPath != "" || m.MountPath == path {
			is.add("policy", "--egress-policy=%s is mounted with subPath: the kubelet never updates it, so the sidecar cannot re-read an edit", path)
			return
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cm = v.ConfigMap
			}
		}
	}
	if cm == nil {
		is.add("policy", "--egress-policy=%s: want its directory mounted from a ConfigMap volume", path)
		return
	}
	for _, it := range cm.Items {
		if it.Path == key {
			key = it.Key
		}
	}
	for _, o := range objs {
		c, ok := o.obj.(*corev1.ConfigMap)
		if !ok || c.Name != cm.Name {
			continue
		}
		body, ok := c.Data[key]
		if !ok {
			is.add("policy", "ConfigMap %q has no key %q for --egress-policy=%s", c.Name, key, path)
			return
		}
		if _, err := policy.Parse([]byte(body)); err != nil {
			is.add("policy", "ConfigMap %q key %q: %v", c.Name, key, err)
		}
		return
	}
}

// TestEgressPolicyOverlay: the overlay's policy is in force as the sidecar will read it, and
// the check catches a subPath mount, a missing key and a rule the parser refuses.
func TestEgressPolicyOverlay(t *testing.T) {
	fresh := func(t *testing.T) ([]object, *appsv1.Deployment, *corev1.ConfigMap) {
		objs, err := render(".", "overlays/egress-policy")
		if err != nil {
			t.Fatal(err)
		}
		var d *appsv1.Deployment
		var cm *corev1.ConfigMap
		for _, o := range objs {
			switch v := o.obj.(type) {
			case *appsv1.Deployment:
				d = v
			case *corev1.ConfigMap:
				cm = v
			}
		}
		if d == nil || cm == nil {
			t.Fatal("the overlay lacks its Deployment or ConfigMap")
		}
		return objs, d, cm
	}
	objs, _, cm := fresh(t)
	is, _ := checkSet(objs, flagTwins())
	for _, i := range is {
		t.Error(i)
	}
	p, err := policy.Parse([]byte(cm.Data["policy"]))
	if err != nil || p.Rules() == 0 || p.Default != policy.Deny {
		t.Errorf("the overlay's policy: %v rules, default %v, %v", p.Rules(), p.Default, err)
	}
	if cm.Namespace != "demo" || cm.Name != "nat464-egress-policy" {
		t.Errorf("ConfigMap %s/%s: want demo/nat464-egress-policy, no hash suffix (an update must not restart the pod)", cm.Namespace, cm.Name)
	}
	for _, tc := range []struct {
		name, want string
		mutate     func(*appsv1.Deployment, *corev1.ConfigMap)
	}{
		{"subPath mount", "subPath", func(d *appsv1.Deployment, _ *corev1.ConfigMap) {
			m := &d.Spec.Template.Spec.InitContainers[0].VolumeMounts[0]
			m.MountPath, m.SubPath = "/etc/nat464/policy/policy", "policy"
		}},
		{"no mount", "want its directory mounted", func(d *appsv1.Deployment, _ *corev1.ConfigMap) {
			d.Spec.Template.Spec.InitContainers[0].VolumeMounts = nil
		}},
		{"missing key", `no key "policy"`, func(_ *appsv1.Deployment, cm *corev1.ConfigMap) {
			cm.Data = map[string]string{"rules": "allow x.example"}
		}},
		{"bad rule", "line 2: ", func(_ *appsv1.Deployment, cm *corev1.ConfigMap) {
			cm.Data["policy"] = "allow x.example\npermit y.example\n"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, d, cm := fresh(t)
			tc.mutate(d, cm)
			is, _ := checkSet(objs, flagTwins())
			found := false
			for _, i := range is {
				found = found || strings.Contains(i.String(), tc.want)
			}
			if !found {
				t.Errorf("no issue containing %q; got %v", tc.want, is)
			}
		})
	}
}
