package deploy

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// safeSysctls is kubelet's list of namespaced sysctls that the baseline (and so restricted) Pod
// Security Standard allows.
var safeSysctls = []string{
	"kernel.shm_rmid_forced",
	"net.ipv4.ip_local_port_range",
	"net.ipv4.ip_local_reserved_ports",
	"net.ipv4.tcp_syncookies",
	"net.ipv4.ping_group_range",
	"net.ipv4.ip_unprivileged_port_start",
	"net.ipv4.tcp_keepalive_time",
	"net.ipv4.tcp_fin_timeout",
	"net.ipv4.tcp_keepalive_intvl",
	"net.ipv4.tcp_keepalive_probes",
}

// checkPodSecurity holds the pod to the "restricted" Pod Security Standard, stricter in two ways:
// every container states every field itself (so it stays safe when copied elsewhere), and the
// identity is the image's numeric nonroot user 65532:65532.
func checkPodSecurity(spec *corev1.PodSpec, is *issues) {
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		is.add("pss", "pod shares a host namespace")
	}
	psc := spec.SecurityContext
	if psc == nil {
		is.add("pss", "pod has no securityContext")
		psc = &corev1.PodSecurityContext{}
	}
	if !isTrue(psc.RunAsNonRoot) {
		is.add("pss", "pod: runAsNonRoot must be true")
	}
	if !isID(psc.RunAsUser) || !isID(psc.RunAsGroup) {
		is.add("pss", "pod: runAsUser and runAsGroup must be %d", nonRootID)
	}
	if !isRuntimeDefault(psc.SeccompProfile) {
		is.add("pss", "pod: seccompProfile must be RuntimeDefault")
	}
	for _, s := range psc.Sysctls {
		if !slices.Contains(safeSysctls, s.Name) {
			is.add("pss", "pod: sysctl %s is not in the safe set", s.Name)
		}
	}
	for _, v := range spec.Volumes {
		vs := v.VolumeSource
		if vs.ConfigMap == nil && vs.CSI == nil && vs.DownwardAPI == nil && vs.EmptyDir == nil &&
			vs.Ephemeral == nil && vs.PersistentVolumeClaim == nil && vs.Projected == nil && vs.Secret == nil {
			is.add("pss", "volume %q: type not allowed by the restricted standard", v.Name)
		}
	}
	for _, c := range allContainers(spec) {
		checkContainerSecurity(c, is)
		checkResources(c, is)
	}
}

func checkContainerSecurity(c *corev1.Container, is *issues) {
	sc := c.SecurityContext
	if sc == nil {
		is.add("pss", "container %q has no securityContext", c.Name)
		return
	}
	if !isTrue(sc.RunAsNonRoot) {
		is.add("pss", "container %q: runAsNonRoot must be true", c.Name)
	}
	if !isID(sc.RunAsUser) || !isID(sc.RunAsGroup) {
		is.add("pss", "container %q: runAsUser and runAsGroup must be %d", c.Name, nonRootID)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		is.add("pss", "container %q: allowPrivilegeEscalation must be false", c.Name)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		is.add("pss", "container %q: readOnlyRootFilesystem must be true", c.Name)
	}
	if isTrue(sc.Privileged) {
		is.add("pss", "container %q: privileged", c.Name)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		is.add("pss", "container %q: capabilities must drop ALL", c.Name)
	} else if len(sc.Capabilities.Add) > 0 {
		is.add("pss", "container %q: adds capabilities %v (a non-root process cannot use them; "+
			"use net.ipv4.ip_unprivileged_port_start for low ports)", c.Name, sc.Capabilities.Add)
	}
	if !isRuntimeDefault(sc.SeccompProfile) {
		is.add("pss", "container %q: seccompProfile must be RuntimeDefault", c.Name)
	}
	if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
		is.add("pss", "container %q: procMount must be Default", c.Name)
	}
	for _, p := range c.Ports {
		if p.HostPort != 0 {
			is.add("pss", "container %q: hostPort %d", c.Name, p.HostPort)
		}
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

func isTrue(b *bool) bool { return b != nil && *b }

func isID(id *int64) bool { return id != nil && *id == nonRootID }

func isRuntimeDefault(p *corev1.SeccompProfile) bool {
	return p != nil && p.Type == corev1.SeccompProfileTypeRuntimeDefault
}
