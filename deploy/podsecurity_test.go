package deploy

import (
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// unprivPortSysctl is the sysctl transparent egress (and examples/pod.yaml) sets so that the
// non-root sidecar may bind port 53 (or 80).
const unprivPortSysctl = "net.ipv4.ip_unprivileged_port_start"

// allPods returns every pod template of every set manifestSets builds: the plain files of
// base, examples and overlays, and every kustomize render (components included through the
// overlays that list them).
func allPods(t *testing.T) []podTemplate {
	t.Helper()
	sets := manifestSets(t, ".")
	var out []podTemplate
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		pods, _ := podsAndServices(sets[name])
		out = append(out, pods...)
	}
	return out
}

func hasSysctl(spec *corev1.PodSpec, name string) bool {
	return spec.SecurityContext != nil &&
		slices.ContainsFunc(spec.SecurityContext.Sysctls, func(s corev1.Sysctl) bool { return s.Name == name })
}

// TestPodSecurityAdmission runs the official Pod Security evaluator (k8s.io/pod-security-admission,
// restricted, latest) over every pod template in deploy/ and wants each one admitted, the
// transparent-egress variant (dnsPolicy None and the unprivileged-port sysctl) among them.
func TestPodSecurityAdmission(t *testing.T) {
	pods := allPods(t)
	transparent := 0
	for _, p := range pods {
		refusals, err := podSecurityRefusals(restrictedLatest, p.meta, p.spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range refusals {
			t.Errorf("%s: refused by %s: %s", p.src, restrictedLatest, r)
		}
		if p.spec.DNSPolicy == corev1.DNSNone && hasSysctl(p.spec, unprivPortSysctl) {
			transparent++
		}
		if len(refusals) == 0 {
			t.Logf("%s: admitted by %s", p.src, restrictedLatest)
		}
	}
	// base and examples as files; the renders of base, overlays/example, overlays/transparent
	// and overlays/existing-app.
	if len(pods) < 6 {
		t.Errorf("evaluated %d pod templates, want at least 6: are manifests missing?", len(pods))
	}
	if transparent == 0 {
		t.Errorf("no pod with dnsPolicy None and %s: the transparent-egress render was not evaluated", unprivPortSysctl)
	}
}

// TestPodSecurityRefuses breaks a copy of every pod template one way at a time and wants the
// evaluator to refuse it for the matching reason, so TestPodSecurityAdmission can fail.
func TestPodSecurityRefuses(t *testing.T) {
	sidecarOf := func(s *corev1.PodSpec) *corev1.Container { // the injector's pod has none: its one container
		if c := findSidecar(s, &issues{}); c != nil {
			return c
		}
		return &s.Containers[0]
	}
	appOf := func(s *corev1.PodSpec) *corev1.Container { return &s.Containers[0] }
	f, tr := false, true
	breaks := []struct {
		name, reason string // reason: the evaluator's ForbiddenReason
		mutate       func(*corev1.PodSpec)
	}{
		{"NET_ADMIN added to the sidecar", "unrestricted capabilities", func(s *corev1.PodSpec) {
			c := sidecarOf(s)
			c.SecurityContext.Capabilities.Add = append(c.SecurityContext.Capabilities.Add, "NET_ADMIN")
		}},
		{"runAsNonRoot false on the pod", "runAsNonRoot != true", func(s *corev1.PodSpec) {
			s.SecurityContext.RunAsNonRoot = &f
		}},
		{"runAsNonRoot false on the app", "runAsNonRoot != true", func(s *corev1.PodSpec) {
			appOf(s).SecurityContext.RunAsNonRoot = &f
		}},
		{"sidecar probe with a host", "probe or lifecycle host", func(s *corev1.PodSpec) {
			sidecarOf(s).ReadinessProbe.HTTPGet.Host = "192.0.2.1"
		}},
		{"hostNetwork", "host namespaces", func(s *corev1.PodSpec) { s.HostNetwork = true }},
		{"privileged app", "privileged", func(s *corev1.PodSpec) { appOf(s).SecurityContext.Privileged = &tr }},
		{"privilege escalation", "allowPrivilegeEscalation != false", func(s *corev1.PodSpec) {
			sidecarOf(s).SecurityContext.AllowPrivilegeEscalation = &tr
		}},
		{"hostPort on the sidecar", "hostPort", func(s *corev1.PodSpec) { sidecarOf(s).Ports[0].HostPort = 8080 }},
		{"hostPath volume", "restricted volume types", func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/var/run"}}})
		}},
		{"unsafe sysctl", "forbidden sysctls", func(s *corev1.PodSpec) {
			s.SecurityContext.Sysctls = append(s.SecurityContext.Sysctls, corev1.Sysctl{Name: "net.core.somaxconn", Value: "1024"})
		}},
		{"seccomp Unconfined on the pod", "seccompProfile", func(s *corev1.PodSpec) {
			s.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}},
	}
	pods := allPods(t)
	if len(pods) == 0 {
		t.Fatal("no pod templates")
	}
	for _, p := range pods {
		for _, b := range breaks {
			t.Run(p.src+"/"+b.name, func(t *testing.T) {
				spec := p.spec.DeepCopy()
				meta := p.meta.DeepCopy()
				b.mutate(spec)
				refusals, err := podSecurityRefusals(restrictedLatest, meta, spec)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.ContainsFunc(refusals, func(r string) bool { return strings.HasPrefix(r, b.reason) }) {
					t.Errorf("evaluator refusals %q, want one for %q", refusals, b.reason)
				}
				var is issues
				checkPodSecurity(meta, spec, &is)
				if !slices.Contains(is.rules(), "pss") {
					t.Errorf("checkPodSecurity: rules %v, want pss", is.rules())
				}
			})
		}
	}
}
