package deploy

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nat464/nat464-sidecar/admin"
	"github.com/nat464/nat464-sidecar/config"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The probe paths are the ones the admin server really serves.
const (
	pathStartupz = admin.PathStartupz
	pathReadyz   = admin.PathReadyz
	pathLivez    = admin.PathLivez
)

const (
	sidecarName = "nat464-sidecar"
	nonRootID   = 65532
	// graceMargin is what terminationGracePeriodSeconds must leave beyond --drain-timeout for
	// the sidecar to log, flush and exit before SIGKILL.
	graceMargin = 5 * time.Second
	// defaultGrace is Kubernetes' terminationGracePeriodSeconds when a pod sets none.
	defaultGrace = 30
)

// issue is one rule a manifest breaks; rule names the check (tests match on it, not on msg).
type issue struct{ rule, msg string }

func (i issue) String() string { return i.rule + ": " + i.msg }

type issues []issue

func (is *issues) add(rule, format string, args ...any) {
	*is = append(*is, issue{rule, fmt.Sprintf(format, args...)})
}

func (is issues) rules() []string {
	var out []string
	for _, i := range is {
		if !slices.Contains(out, i.rule) {
			out = append(out, i.rule)
		}
	}
	return out
}

// sidecar is the nat464-sidecar container of a pod with its configuration parsed by the real
// config.Parse from the container's args and NAT464_* environment.
type sidecar struct {
	c   *corev1.Container
	cfg *config.Config
}

// findSidecar locates the sidecar: exactly one, a native sidecar in initContainers.
func findSidecar(spec *corev1.PodSpec, is *issues) *corev1.Container {
	var found *corev1.Container
	for i := range spec.Containers {
		if isSidecar(&spec.Containers[i]) {
			is.add("sidecar", "container %q must be a native sidecar in initContainers", spec.Containers[i].Name)
		}
	}
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		if !isSidecar(c) {
			continue
		}
		if found != nil {
			is.add("sidecar", "more than one nat464-sidecar init container")
		}
		found = c
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			is.add("sidecar", "init container %q needs restartPolicy: Always (native sidecar)", c.Name)
		}
	}
	if found == nil {
		is.add("sidecar", "no nat464-sidecar init container")
	}
	return found
}

func isSidecar(c *corev1.Container) bool {
	return c.Name == sidecarName || strings.Contains(c.Image, "/"+sidecarName)
}

// flagTwins is the set of NAT464_* names config.Parse consults: it asks getenv for the twin of
// every flag it defines.
func flagTwins() map[string]bool {
	twins := map[string]bool{}
	_, _ = config.Parse(nil, func(k string) string { twins[k] = true; return "" }, io.Discard)
	return twins
}

// isBoolFlag reports whether --name is a flag that takes no value.
func isBoolFlag(name string) bool {
	_, err := config.Parse([]string{"--" + name}, nil, io.Discard)
	return err == nil
}

// parseSidecar runs the container's args and literal env through config.Parse and checks the
// NAT464_* variables: each must be a real flag twin and must not repeat a flag given in args
// (args win, so the env value would be silently ignored).
func parseSidecar(c *corev1.Container, twins map[string]bool, is *issues) *config.Config {
	if len(c.Command) > 0 {
		is.add("sidecar", "command is set; the image's entrypoint is /nat464-sidecar, use args")
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			is.add("env", "variable %s given twice", e.Name)
		}
		env[e.Name] = e.Value
		if strings.HasPrefix(e.Name, "NAT464_") && !twins[e.Name] {
			is.add("env", "%s is not the twin of any flag", e.Name)
		}
	}
	for _, a := range c.Args {
		if strings.Contains(a, "$(") {
			is.add("args", "argument %q relies on $(VAR) expansion; set the NAT464_* twin instead", a)
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch {
		case !strings.HasPrefix(a, "--"):
			is.add("args", "argument %q: write flags as --name=value", a)
		case !hasValue && !isBoolFlag(name):
			is.add("args", "argument %q: write flags as --name=value", a)
		}
		if _, ok := env[config.EnvName(name)]; ok {
			is.add("env", "%s repeats --%s from args and would be ignored", config.EnvName(name), name)
		}
	}
	cfg, err := config.Parse(c.Args, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		is.add("config", "config.Parse: %v", err)
		return nil
	}
	return cfg
}

// portOf resolves a probe or Service port (a number, or a name among the container's ports).
func portOf(p intstr.IntOrString, c *corev1.Container) (int, bool) {
	if p.Type == intstr.Int {
		return p.IntValue(), true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

// checkProbes wants startup, readiness and liveness probes on exactly the paths the admin server
// serves, on the port of --admin-listen, which kubelet must reach over the pod IP.
func checkProbes(sc sidecar, is *issues) {
	host, portStr, err := net.SplitHostPort(sc.cfg.AdminListen)
	if err != nil {
		is.add("probe", "--admin-listen=%q has no port: probes cannot reach it", sc.cfg.AdminListen)
		return
	}
	if host != "" && host != "::" {
		is.add("probe", "--admin-listen=%q: kubelet probes the pod IP, listen on [::]", sc.cfg.AdminListen)
	}
	adminPort, _ := strconv.Atoi(portStr)
	for _, p := range []struct {
		kind, path string
		probe      *corev1.Probe
	}{
		{"startupProbe", pathStartupz, sc.c.StartupProbe},
		{"readinessProbe", pathReadyz, sc.c.ReadinessProbe},
		{"livenessProbe", pathLivez, sc.c.LivenessProbe},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			is.add("probe", "%s: want an httpGet probe on %s", p.kind, p.path)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			is.add("probe", "%s: path %q, want %q", p.kind, g.Path, p.path)
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			is.add("probe", "%s: scheme %s, the admin server speaks plain HTTP", p.kind, g.Scheme)
		}
		if g.Host != "" {
			is.add("probe", "%s: host %q set; leave it empty so kubelet uses the pod IP", p.kind, g.Host)
		}
		if port, ok := portOf(g.Port, sc.c); !ok || port != adminPort {
			is.add("probe", "%s: port %s, want the --admin-listen port %d", p.kind, g.Port.String(), adminPort)
		}
	}
}

// checkGrace wants the shared grace period to cover the sidecar's drain plus a margin.
func checkGrace(spec *corev1.PodSpec, sc sidecar, is *issues) {
	grace := int64(defaultGrace)
	if spec.TerminationGracePeriodSeconds != nil {
		grace = *spec.TerminationGracePeriodSeconds
	}
	if time.Duration(grace)*time.Second < sc.cfg.DrainTimeout+graceMargin {
		is.add("grace", "terminationGracePeriodSeconds %d leaves less than %v beyond --drain-timeout=%v",
			grace, graceMargin, sc.cfg.DrainTimeout)
	}
}

// checkInbound wants every inbound listen port declared in the pod, by the sidecar or, with the
// same port on both sides, by the app's container (declared twice it draws the API server's
// duplicate-port warning), and ports below 1024 allowed by the namespaced sysctl (capabilities do
// not work for a non-root process).
func checkInbound(spec *corev1.PodSpec, sc sidecar, is *issues) {
	unpriv := 1024
	if spec.SecurityContext != nil {
		for _, s := range spec.SecurityContext.Sysctls {
			if s.Name == "net.ipv4.ip_unprivileged_port_start" {
				if n, err := strconv.Atoi(s.Value); err == nil {
					unpriv = n
				}
			}
		}
	}
	for _, m := range sc.cfg.Inbound {
		port := int(m.Listen.Port())
		if port < unpriv {
			is.add("inbound", "--inbound %s listens below net.ipv4.ip_unprivileged_port_start (%d)", m, unpriv)
		}
		declared := func(c *corev1.Container) bool {
			return slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == port })
		}
		if !slices.ContainsFunc(allContainers(spec), declared) {
			is.add("inbound", "--inbound %s: port %d is not in the pod's ports", m, port)
		}
	}
}

// inboundPort reports whether port is the listen port of one of the sidecar's inbound mappings.
func (sc sidecar) inboundPort(port int) bool {
	return slices.ContainsFunc(sc.cfg.Inbound, func(m config.Mapping) bool { return int(m.Listen.Port()) == port })
}

// checkAppProbes wants every network probe of an app container on an inbound listen port of the
// sidecar: kubelet probes the pod IP, which is IPv6, and the app listens on IPv4 only. With the
// same port on both sides (--inbound=8080=127.0.0.1:8080) the app's own probes stay as they are:
// the sidecar's [::]:8080 is IPV6_V6ONLY and shares the number with the app's 0.0.0.0:8080.
func checkAppProbes(spec *corev1.PodSpec, sc sidecar, is *issues) {
	for i := range spec.Containers {
		c := &spec.Containers[i]
		for _, kp := range []struct {
			kind  string
			probe *corev1.Probe
		}{{"startupProbe", c.StartupProbe}, {"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}} {
			kind, p := kp.kind, kp.probe
			if p == nil {
				continue
			}
			var port intstr.IntOrString
			switch h := p.ProbeHandler; {
			case h.HTTPGet != nil && h.HTTPGet.Host == "":
				port = h.HTTPGet.Port
			case h.TCPSocket != nil && h.TCPSocket.Host == "":
				port = h.TCPSocket.Port
			case h.GRPC != nil:
				port = intstr.FromInt32(h.GRPC.Port)
			default:
				continue // exec, or a probe of another host
			}
			if n, ok := portOf(port, c); !ok || !sc.inboundPort(n) {
				is.add("app-probe", "container %q: %s on port %s: kubelet probes the pod's IPv6 address, where only the sidecar's "+
					"--inbound listen ports answer for an IPv4-only app", c.Name, kind, port.String())
			}
		}
	}
}
