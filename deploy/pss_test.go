package deploy

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// restrictedLatest is what examples/namespace.yaml enforces: the restricted level at version
// latest (the newest rules the pod-security-admission module in go.mod knows).
var restrictedLatest = api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}

// podSecurity is the Pod Security Admission's own evaluator, the code the API server runs for a
// namespace labelled pod-security.kubernetes.io/enforce, with every default check.
var podSecurity = sync.OnceValues(func() (policy.Evaluator, error) {
	return policy.NewEvaluator(policy.DefaultChecks(), nil)
})

// podSecurityRefusals returns what the evaluator refuses in a pod at lv, one "reason (detail)"
// per failed check; none means the pod is admitted.
func podSecurityRefusals(lv api.LevelVersion, meta *metav1.ObjectMeta, spec *corev1.PodSpec) ([]string, error) {
	ev, err := podSecurity()
	if err != nil {
		return nil, fmt.Errorf("pod-security-admission evaluator: %w", err)
	}
	if meta == nil {
		meta = &metav1.ObjectMeta{}
	}
	var out []string
	for _, r := range ev.EvaluatePod(lv, meta, spec) {
		if r.Allowed {
			continue
		}
		msg := r.ForbiddenReason
		if r.ForbiddenDetail != "" {
			msg += " (" + r.ForbiddenDetail + ")"
		}
		out = append(out, msg)
	}
	return out, nil
}

// checkPodSecurity holds the pod to the restricted Pod Security Standard with the official
// evaluator, then to two house rules it does not state:
//
//   - every container is admitted on its own, without the pod's securityContext, so it stays
//     safe when copied into another pod (rule "pss");
//   - the identity is the image's numeric nonroot user 65532:65532, the root filesystem is
//     read-only, and no capability is added, not even the NET_BIND_SERVICE the standard allows:
//     Kubernetes has no ambient capabilities, so a non-root process never gets it (rule
//     "hardening").
func checkPodSecurity(meta *metav1.ObjectMeta, spec *corev1.PodSpec, is *issues) {
	refusals, err := podSecurityRefusals(restrictedLatest, meta, spec)
	if err != nil {
		is.add("pss", "%v", err)
		return
	}
	for _, r := range refusals {
		is.add("pss", "pod refused by %s: %s", restrictedLatest, r)
	}
	for _, c := range allContainers(spec) {
		alone := &corev1.PodSpec{Containers: []corev1.Container{*c.DeepCopy()}}
		refusals, _ := podSecurityRefusals(restrictedLatest, meta, alone)
		for _, r := range refusals {
			is.add("pss", "container %q on its own (without the pod's securityContext) refused by %s: %s", c.Name, restrictedLatest, r)
		}
		checkHardening(c, is)
		checkResources(c, is)
	}
	if psc := spec.SecurityContext; psc == nil || !isID(psc.RunAsUser) || !isID(psc.RunAsGroup) {
		is.add("hardening", "pod: runAsUser and runAsGroup must be %d", nonRootID)
	}
}

// checkHardening applies the house rules beyond the standard to one container.
func checkHardening(c *corev1.Container, is *issues) {
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	if !isID(sc.RunAsUser) || !isID(sc.RunAsGroup) {
		is.add("hardening", "container %q: runAsUser and runAsGroup must be %d", c.Name, nonRootID)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		is.add("hardening", "container %q: readOnlyRootFilesystem must be true", c.Name)
	}
	if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
		is.add("hardening", "container %q: adds capabilities %v (a non-root process cannot use them; "+
			"use net.ipv4.ip_unprivileged_port_start for low ports)", c.Name, sc.Capabilities.Add)
	}
}

// checkResources wants CPU and memory requests and a memory limit on every container.
func checkResources(c *corev1.Container, is *issues) {
	r := c.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := r.Requests[name]; !ok || q.IsZero() {
			is.add("resources", "container %q: no %s request", c.Name, name)
		}
	}
	if q, ok := r.Limits[corev1.ResourceMemory]; !ok || q.IsZero() {
		is.add("resources", "container %q: no memory limit", c.Name)
	}
	for name, lim := range r.Limits {
		if req, ok := r.Requests[name]; ok && lim.Cmp(req) < 0 {
			is.add("resources", "container %q: %s limit below its request", c.Name, name)
		}
	}
}

func allContainers(spec *corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range spec.InitContainers {
		out = append(out, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		out = append(out, &spec.Containers[i])
	}
	for i := range spec.EphemeralContainers {
		out = append(out, (*corev1.Container)(&spec.EphemeralContainers[i].EphemeralContainerCommon))
	}
	return out
}

func isID(id *int64) bool { return id != nil && *id == nonRootID }
