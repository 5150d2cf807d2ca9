package deploy

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// checkTransparent holds a pod whose sidecar is its DNS server (--dns-listen) to what transparent
// egress needs: the pod's resolv.conf names the sidecar and nothing else, the sidecar knows the
// real resolvers, it may bind its low ports, its state file is on a writable volume that lives
// as long as the pod, and the app carries no proxy settings.
func checkTransparent(spec *corev1.PodSpec, sc sidecar, is *issues) {
	cfg := sc.cfg
	listen := cfg.DNSListen
	if spec.DNSPolicy != corev1.DNSNone || spec.DNSConfig == nil {
		is.add("transparent", "--dns-listen=%s: want dnsPolicy None with a dnsConfig naming it", listen)
	} else {
		d := spec.DNSConfig
		if listen.Port() != 53 || !slices.Equal(d.Nameservers, []string{listen.Addr().String()}) {
			is.add("transparent", "dnsConfig.nameservers %v: want exactly [%s], and --dns-listen on port 53 (resolv.conf has no port)", d.Nameservers, listen.Addr())
		}
		if len(d.Searches) == 0 || !slices.ContainsFunc(d.Options, func(o corev1.PodDNSConfigOption) bool { return o.Name == "ndots" }) {
			is.add("transparent", "dnsConfig: want the Kubernetes search list and ndots, as ClusterFirst writes them")
		}
	}
	if len(cfg.DNSUpstream) == 0 {
		is.add("transparent", "--dns-upstream is not set: the pod's resolv.conf names only the sidecar")
	}
	for _, u := range cfg.DNSUpstream {
		if u.Addr().IsLoopback() {
			is.add("transparent", "--dns-upstream %s is a loopback address, not the cluster DNS", u)
		}
	}
	low := int(listen.Port())
	for _, p := range cfg.EgressPorts {
		low = min(low, int(p))
	}
	if unpriv := unprivilegedStart(spec); low < unpriv {
		is.add("transparent", "port %d (DNS or egress) is below net.ipv4.ip_unprivileged_port_start (%d)", low, unpriv)
	}
	checkStateVolume(spec, sc, is)
	for _, c := range spec.Containers {
		for _, e := range c.Env {
			if strings.HasSuffix(strings.ToUpper(e.Name), "_PROXY") && !strings.EqualFold(e.Name, "NO_PROXY") {
				is.add("transparent", "container %q: %s is set; transparent egress needs no proxy setting", c.Name, e.Name)
			}
		}
	}
}

// unprivilegedStart is the pod's net.ipv4.ip_unprivileged_port_start (1024 unless set).
func unprivilegedStart(spec *corev1.PodSpec) int {
	if spec.SecurityContext != nil {
		for _, s := range spec.SecurityContext.Sysctls {
			if s.Name == "net.ipv4.ip_unprivileged_port_start" {
				if n, err := strconv.Atoi(s.Value); err == nil {
					return n
				}
			}
		}
	}
	return 1024
}

// checkStateVolume wants --egress-state in a directory the sidecar mounts from an emptyDir.
func checkStateVolume(spec *corev1.PodSpec, sc sidecar, is *issues) {
	if sc.cfg.EgressState == "" {
		is.add("transparent", "--egress-state is not set: a sidecar restart would lose the addresses apps hold")
		return
	}
	dir := filepath.Dir(sc.cfg.EgressState)
	for _, m := range sc.c.VolumeMounts {
		if m.MountPath != dir || m.ReadOnly {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.EmptyDir != nil {
				return
			}
		}
	}
	is.add("transparent", "--egress-state=%s: want its directory mounted read-write from an emptyDir", sc.cfg.EgressState)
}

// TestTransparentChecksCatch breaks the transparent overlay's render one way at a time.
func TestTransparentChecksCatch(t *testing.T) {
	fresh := func(t *testing.T) ([]object, *appsv1.Deployment) {
		objs, err := render(".", "overlays/transparent")
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if d, ok := o.obj.(*appsv1.Deployment); ok {
				return objs, d
			}
		}
		t.Fatal("no Deployment in the transparent overlay")
		return nil, nil
	}
	sidecarEnv := func(d *appsv1.Deployment, name, value string) {
		c := &d.Spec.Template.Spec.InitContainers[0]
		for i := range c.Env {
			if c.Env[i].Name == name {
				c.Env[i].Value = value
				return
			}
		}
		c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
	}
	for _, tc := range []struct {
		name, want string
		mutate     func(*appsv1.Deployment)
	}{
		{"unchanged", "", func(*appsv1.Deployment) {}},
		{"ClusterFirst DNS", "transparent", func(d *appsv1.Deployment) { d.Spec.Template.Spec.DNSPolicy = corev1.DNSClusterFirst }},
		{"another nameserver", "transparent", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.DNSConfig.Nameservers = append(d.Spec.Template.Spec.DNSConfig.Nameservers, "fd00:10:96::a")
		}},
		{"no sysctl", "transparent", func(d *appsv1.Deployment) { d.Spec.Template.Spec.SecurityContext.Sysctls = nil }},
		{"upstream is the sidecar", "config", func(d *appsv1.Deployment) { sidecarEnv(d, "NAT464_DNS_UPSTREAM", "127.0.0.1") }},
		{"loopback upstream", "transparent", func(d *appsv1.Deployment) { sidecarEnv(d, "NAT464_DNS_UPSTREAM", "127.0.0.53") }},
		{"no upstream", "transparent", func(d *appsv1.Deployment) {
			c := &d.Spec.Template.Spec.InitContainers[0]
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "NAT464_DNS_UPSTREAM" })
		}},
		{"state on the read-only root", "transparent", func(d *appsv1.Deployment) { sidecarEnv(d, "NAT464_EGRESS_STATE", "/tmp/egress.json") }},
		{"proxy variable left", "transparent", func(d *appsv1.Deployment) {
			c := &d.Spec.Template.Spec.Containers[0]
			c.Env = append(c.Env, corev1.EnvVar{Name: "HTTPS_PROXY", Value: "http://127.0.0.1:1080"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, d := fresh(t)
			tc.mutate(d)
			is, _ := checkSet(objs, flagTwins())
			if tc.want == "" {
				for _, i := range is {
					t.Error(i)
				}
				return
			}
			if !slices.Contains(is.rules(), tc.want) {
				t.Errorf("rules %v, want %q", is.rules(), tc.want)
			}
		})
	}
	// The overlay's sidecar really is the pod's DNS server, as the parser reads it.
	objs, _ := fresh(t)
	pods, _ := podsAndServices(objs)
	c := findSidecar(pods[0].spec, &issues{})
	cfg := parseSidecar(c, flagTwins(), &issues{})
	if cfg == nil || cfg.DNSListen != netip.MustParseAddrPort("127.0.0.1:53") || !slices.Equal(cfg.EgressPorts, []uint16{80, 443}) {
		t.Errorf("parsed transparent sidecar: %+v", cfg)
	}
}
