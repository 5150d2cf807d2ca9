package deploy

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestChecksCatch proves the checks are not vacuous: each case breaks the base manifests in one
// way and wants the matching rule to fire (and the unbroken base to pass).
func TestChecksCatch(t *testing.T) {
	var base []object
	for _, f := range []string{"base/deployment.yaml", "base/service.yaml"} {
		data, err := readFile(".", f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeStrict(f, data)
		if err != nil {
			t.Fatal(err)
		}
		base = append(base, objs...)
	}
	sidecarOf := func(d *appsv1.Deployment) *corev1.Container { return &d.Spec.Template.Spec.InitContainers[0] }
	appOf := func(d *appsv1.Deployment) *corev1.Container { return &d.Spec.Template.Spec.Containers[0] }
	setEnv := func(c *corev1.Container, name, value string) {
		for i := range c.Env {
			if c.Env[i].Name == name {
				c.Env[i].Value = value
				return
			}
		}
		c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
	}
	// setArg replaces --name=... in the sidecar's args, or appends it.
	setArg := func(d *appsv1.Deployment, name, value string) {
		c := sidecarOf(d)
		for i, a := range c.Args {
			if strings.HasPrefix(a, "--"+name+"=") {
				c.Args[i] = "--" + name + "=" + value
				return
			}
		}
		c.Args = append(c.Args, "--"+name+"="+value)
	}
	// moveBefore moves env entry name in c to just before entry other.
	moveBefore := func(c *corev1.Container, name, other string) {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
		e := c.Env[i]
		c.Env = slices.Delete(c.Env, i, i+1)
		j := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == other })
		c.Env = slices.Insert(c.Env, j, e)
	}
	// listenBoth is the rule a proxy on one loopback breaks.
	listenBoth := "proxy-env"
	tests := []struct {
		name   string
		want   string // rule; "" means no issue at all
		mutate func(*appsv1.Deployment, *corev1.Service)
	}{
		{"unchanged", "", func(*appsv1.Deployment, *corev1.Service) {}},
		{"privilege escalation", "pss", func(d *appsv1.Deployment, _ *corev1.Service) {
			sidecarOf(d).SecurityContext.AllowPrivilegeEscalation = nil
		}},
		{"writable root", "hardening", func(d *appsv1.Deployment, _ *corev1.Service) {
			f := false
			appOf(d).SecurityContext.ReadOnlyRootFilesystem = &f
		}},
		{"capability the standard allows added", "hardening", func(d *appsv1.Deployment, _ *corev1.Service) {
			sidecarOf(d).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"}
		}},
		{"capability added", "pss", func(d *appsv1.Deployment, _ *corev1.Service) {
			sidecarOf(d).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}},
		{"root user", "pss", func(d *appsv1.Deployment, _ *corev1.Service) {
			var root int64
			d.Spec.Template.Spec.SecurityContext.RunAsUser = &root
		}},
		{"another user", "hardening", func(d *appsv1.Deployment, _ *corev1.Service) {
			other := int64(1000)
			appOf(d).SecurityContext.RunAsUser = &other
		}},
		{"container relying on the pod's seccomp profile", "pss", func(d *appsv1.Deployment, _ *corev1.Service) {
			appOf(d).SecurityContext.SeccompProfile = nil
		}},
		{"unsafe sysctl", "pss", func(d *appsv1.Deployment, _ *corev1.Service) {
			d.Spec.Template.Spec.SecurityContext.Sysctls = []corev1.Sysctl{{Name: "net.core.somaxconn", Value: "1024"}}
		}},
		{"no memory limit", "resources", func(d *appsv1.Deployment, _ *corev1.Service) {
			delete(sidecarOf(d).Resources.Limits, corev1.ResourceMemory)
		}},
		{"sidecar as a regular container", "sidecar", func(d *appsv1.Deployment, _ *corev1.Service) {
			s := d.Spec.Template.Spec
			s.Containers = append(s.Containers, s.InitContainers[0])
			s.Containers[1].RestartPolicy = nil
			d.Spec.Template.Spec.Containers, d.Spec.Template.Spec.InitContainers = s.Containers, nil
		}},
		{"plain init container", "sidecar", func(d *appsv1.Deployment, _ *corev1.Service) {
			sidecarOf(d).RestartPolicy = nil
		}},
		{"unknown flag", "config", func(d *appsv1.Deployment, _ *corev1.Service) {
			sidecarOf(d).Args = append(sidecarOf(d).Args, "--no-such-flag=1")
		}},
		{"bad env value", "config", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(sidecarOf(d), "NAT464_LOG_LEVEL", "loud")
		}},
		{"env that is no flag twin", "env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(sidecarOf(d), "NAT464_DRAIN", "5s")
		}},
		{"env repeating an arg", "env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(sidecarOf(d), "NAT464_DRAIN_TIMEOUT", "5s")
		}},
		{"flag value as separate arg", "args", func(d *appsv1.Deployment, _ *corev1.Service) {
			sidecarOf(d).Args = append(sidecarOf(d).Args, "--idle-timeout", "1m")
		}},
		{"healthz instead of livez", "probe", func(d *appsv1.Deployment, _ *corev1.Service) {
			sidecarOf(d).LivenessProbe.HTTPGet.Path = "/healthz"
		}},
		{"probe on the wrong port", "probe", func(d *appsv1.Deployment, _ *corev1.Service) {
			sidecarOf(d).ReadinessProbe.HTTPGet.Port = intstr.FromInt32(8080)
		}},
		{"no startup probe", "probe", func(d *appsv1.Deployment, _ *corev1.Service) {
			sidecarOf(d).StartupProbe = nil
		}},
		{"admin on loopback", "probe", func(d *appsv1.Deployment, _ *corev1.Service) {
			setArg(d, "admin-listen", "[::1]:9464")
		}},
		{"grace shorter than drain", "grace", func(d *appsv1.Deployment, _ *corev1.Service) {
			g := int64(15)
			d.Spec.Template.Spec.TerminationGracePeriodSeconds = &g
		}},
		{"default grace with a long drain", "grace", func(d *appsv1.Deployment, _ *corev1.Service) {
			d.Spec.Template.Spec.TerminationGracePeriodSeconds = nil
			setArg(d, "drain-timeout", "28s")
		}},
		{"privileged port without sysctl", "inbound", func(d *appsv1.Deployment, _ *corev1.Service) {
			setArg(d, "inbound", "80=127.0.0.1:8000")
		}},
		{"proxy env on another port", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(appOf(d), "HTTPS_PROXY", "http://localhost:3128")
		}},
		{"proxy moved but env not", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setArg(d, "proxy-listen", "127.0.0.1:1081")
		}},
		{"lowercase twin differs", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(appOf(d), "http_proxy", "http://localhost:9")
		}},
		{"svc bypasses the proxy", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(appOf(d), "NO_PROXY", "localhost,127.0.0.1,::1,.svc")
		}},
		{"node env proxy off", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(appOf(d), "NODE_USE_ENV_PROXY", "0")
		}},
		{"java options missing", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(appOf(d), "JAVA_TOOL_OPTIONS", "")
		}},
		{"java options replaced by the app's own", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(appOf(d), "JAVA_TOOL_OPTIONS", "-Xmx512m")
		}},
		{"java options referenced before they are defined", "env", func(d *appsv1.Deployment, _ *corev1.Service) {
			moveBefore(appOf(d), "JAVA_TOOL_OPTIONS", javaOptsVar)
		}},
		{"java https proxy elsewhere", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(appOf(d), javaOptsVar, "-Dhttp.proxyHost=localhost -Dhttp.proxyPort=1080 -Dhttps.proxyHost=localhost -Dhttps.proxyPort=3128 "+
				"-Dhttp.nonProxyHosts=localhost|127.0.0.1|[::1] -DsocksProxyHost=localhost -DsocksProxyPort=1080")
		}},
		{"java without the plain http proxy", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(appOf(d), javaOptsVar, "-Dhttps.proxyHost=localhost -Dhttps.proxyPort=1080 "+
				"-Dhttp.nonProxyHosts=localhost|127.0.0.1|[::1] -DsocksProxyHost=localhost -DsocksProxyPort=1080")
		}},
		{"java nonProxyHosts in NO_PROXY's syntax", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(appOf(d), javaOptsVar, "-Dhttp.proxyHost=localhost -Dhttp.proxyPort=1080 -Dhttps.proxyHost=localhost -Dhttps.proxyPort=1080 "+
				"-Dhttp.nonProxyHosts=localhost,127.0.0.1,::1 -DsocksProxyHost=localhost -DsocksProxyPort=1080")
		}},
		{"plain http over socks", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(appOf(d), "HTTP_PROXY", "socks5h://localhost:1080")
			setEnv(appOf(d), "http_proxy", "socks5h://localhost:1080")
		}},
		{"https over socks", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(appOf(d), "HTTPS_PROXY", "socks5h://localhost:1080")
			setEnv(appOf(d), "https_proxy", "socks5h://localhost:1080")
		}},
		{"proxy URL with the IPv4 loopback", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(appOf(d), "ALL_PROXY", "socks5h://127.0.0.1:1080")
			setEnv(appOf(d), "all_proxy", "socks5h://127.0.0.1:1080")
		}},
		{"proxy URL with another name", "proxy-env", func(d *appsv1.Deployment, _ *corev1.Service) {
			setEnv(appOf(d), "HTTPS_PROXY", "http://proxy.example:1080")
			setEnv(appOf(d), "https_proxy", "http://proxy.example:1080")
		}},
		{"proxy on the IPv4 loopback only", listenBoth, func(d *appsv1.Deployment, _ *corev1.Service) {
			setArg(d, "proxy-listen", "127.0.0.1:1080")
		}},
		{"app probe on the app's own port", "app-probe", func(d *appsv1.Deployment, _ *corev1.Service) {
			appOf(d).ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8000)}}}
		}},
		{"app probe through the sidecar", "", func(d *appsv1.Deployment, _ *corev1.Service) {
			appOf(d).ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}}}
			appOf(d).LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}}
		}},
		{"app tcp probe on the app's own port", "app-probe", func(d *appsv1.Deployment, _ *corev1.Service) {
			appOf(d).LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8000)}}}
		}},
		{"app exec probe", "", func(d *appsv1.Deployment, _ *corev1.Service) {
			appOf(d).LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/health"}}}}
		}},
		{"service to the app port", "service", func(_ *appsv1.Deployment, s *corev1.Service) {
			s.Spec.Ports[0].TargetPort = intstr.FromInt32(8000)
		}},
		{"dual-stack service", "service", func(_ *appsv1.Deployment, s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
		}},
		{"service selects nothing", "service", func(_ *appsv1.Deployment, s *corev1.Service) {
			s.Spec.Selector = map[string]string{"app.kubernetes.io/name": "other"}
		}},
	}
	twins := flagTwins()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := base[0].obj.(*appsv1.Deployment).DeepCopy()
			s := base[1].obj.(*corev1.Service).DeepCopy()
			tt.mutate(d, s)
			is, _ := checkSet([]object{{"deployment", d}, {"service", s}}, twins)
			switch {
			case tt.want == "" && len(is) > 0:
				t.Errorf("want no issue, got %v", is)
			case tt.want != "" && !slices.Contains(is.rules(), tt.want):
				t.Errorf("want rule %q to fire, got %v", tt.want, is)
			}
		})
	}
}
