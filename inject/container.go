package inject

import (
	"cmp"
	"slices"
	"strconv"
)

// The JSON shapes of the parts of a pod spec the injector writes (field names as in the
// Kubernetes API; deploy's tests decode the result strictly into k8s.io/api types).

type envVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type sysctl struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type port struct {
	Name          string `json:"name"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
}

type probe struct {
	HTTPGet struct {
		Path string `json:"path"`
		Port int    `json:"port"`
	} `json:"httpGet"`
	PeriodSeconds    int `json:"periodSeconds"`
	TimeoutSeconds   int `json:"timeoutSeconds"`
	FailureThreshold int `json:"failureThreshold"`
}

func httpProbe(path string, period, timeout, failures int) *probe {
	p := &probe{PeriodSeconds: period, TimeoutSeconds: timeout, FailureThreshold: failures}
	p.HTTPGet.Path, p.HTTPGet.Port = path, adminPort
	return p
}

type resources struct {
	Requests map[string]string `json:"requests"`
	Limits   map[string]string `json:"limits"`
}

type securityContext struct {
	AllowPrivilegeEscalation bool `json:"allowPrivilegeEscalation"`
	Capabilities             struct {
		Drop []string `json:"drop"`
	} `json:"capabilities"`
	ReadOnlyRootFilesystem bool `json:"readOnlyRootFilesystem"`
	RunAsNonRoot           bool `json:"runAsNonRoot"`
	RunAsUser              int  `json:"runAsUser"`
	RunAsGroup             int  `json:"runAsGroup"`
	SeccompProfile         struct {
		Type string `json:"type"`
	} `json:"seccompProfile"`
}

type volumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
}

// sidecarContainer is the injected native sidecar.
type sidecarContainer struct {
	Name            string          `json:"name"`
	Image           string          `json:"image"`
	RestartPolicy   string          `json:"restartPolicy"`
	Args            []string        `json:"args"`
	Ports           []port          `json:"ports"`
	StartupProbe    *probe          `json:"startupProbe"`
	ReadinessProbe  *probe          `json:"readinessProbe"`
	LivenessProbe   *probe          `json:"livenessProbe"`
	Resources       resources       `json:"resources"`
	SecurityContext securityContext `json:"securityContext"`
	VolumeMounts    []volumeMount   `json:"volumeMounts,omitempty"`
}

// DefaultImage is the sidecar image the manifests name.
const DefaultImage = "ghcr.io/nat464/nat464-sidecar:latest"

const (
	adminPort  = 9464
	stateDir   = "/var/lib/nat464"
	stateName  = "nat464-state"
	nonRootUID = 65532 // the distroless image's nonroot user
)

// sidecar is the container deploy/components/sidecar adds, with args. Its inbound port is
// declared unless an app container declares the same number already (the same port on both
// sides, the default): declared twice, the API server warns of a duplicate port definition.
func (c *Config) sidecar(args []string, transparent bool, apps []container) sidecarContainer {
	s := sidecarContainer{
		Name: SidecarName, Image: cmp.Or(c.Image, DefaultImage), RestartPolicy: "Always", Args: args,
		Ports:          []port{{Name: "nat464-admin", ContainerPort: adminPort, Protocol: "TCP"}},
		StartupProbe:   httpProbe("/startupz", 1, 1, 60),
		ReadinessProbe: httpProbe("/readyz", 5, 1, 2),
		LivenessProbe:  httpProbe("/livez", 10, 2, 3),
		Resources: resources{Requests: map[string]string{"cpu": "50m", "memory": "32Mi"},
			Limits: map[string]string{"cpu": "1", "memory": "256Mi"}},
	}
	in := inboundPort(args)
	if !slices.ContainsFunc(apps, func(a container) bool { return slices.Contains(a.Ports, in) }) {
		s.Ports = append([]port{{Name: "nat464-in", ContainerPort: in, Protocol: "TCP"}}, s.Ports...)
	}
	sc := &s.SecurityContext
	sc.Capabilities.Drop = []string{"ALL"}
	sc.ReadOnlyRootFilesystem, sc.RunAsNonRoot = true, true
	sc.RunAsUser, sc.RunAsGroup = nonRootUID, nonRootUID
	sc.SeccompProfile.Type = "RuntimeDefault"
	if transparent {
		s.VolumeMounts = []volumeMount{{Name: stateName, MountPath: stateDir}}
	}
	return s
}

// inboundPort is the port of the first --inbound argument's listen side (8080 by default).
func inboundPort(args []string) int {
	for _, a := range args {
		v, ok := cutFlag(a, "inbound")
		if !ok {
			continue
		}
		listen, _, _ := cutLast(v)
		if i := lastColon(listen); i >= 0 {
			listen = listen[i+1:]
		}
		if p, err := strconv.Atoi(listen); err == nil && p > 0 && p < 65536 {
			return p
		}
	}
	return 8080
}

func cutFlag(arg, name string) (string, bool) {
	prefix := "--" + name + "="
	if len(arg) > len(prefix) && arg[:len(prefix)] == prefix {
		return arg[len(prefix):], true
	}
	return "", false
}

// cutLast splits LISTEN=TARGET at its first "=" (LISTEN has none).
func cutLast(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == '=' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func lastColon(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return i
		}
	}
	return -1
}

// ProxyEnv is the proxy environment of an app container, as deploy/components/sidecar's
// app-env.yaml sets it (NAT464_JAVA_PROXY_OPTS before JAVA_TOOL_OPTIONS, which refers to it).
var ProxyEnv = []envVar{
	{"NAT464_JAVA_PROXY_OPTS", "-Dhttp.proxyHost=localhost -Dhttp.proxyPort=1080 -Dhttps.proxyHost=localhost -Dhttps.proxyPort=1080 -Dhttp.nonProxyHosts=localhost|127.0.0.1|[::1] -DsocksProxyHost=localhost -DsocksProxyPort=1080"},
	{"JAVA_TOOL_OPTIONS", "$(NAT464_JAVA_PROXY_OPTS)"},
	{"ALL_PROXY", "socks5h://localhost:1080"},
	{"all_proxy", "socks5h://localhost:1080"},
	{"HTTPS_PROXY", "http://localhost:1080"},
	{"https_proxy", "http://localhost:1080"},
	{"HTTP_PROXY", "http://localhost:1080"},
	{"http_proxy", "http://localhost:1080"},
	{"NO_PROXY", "localhost,127.0.0.1,::1"},
	{"no_proxy", "localhost,127.0.0.1,::1"},
	{"NODE_USE_ENV_PROXY", "1"},
}

// envOps append to container i's environment every proxy variable it does not set itself.
// A JAVA_TOOL_OPTIONS of its own is kept, and then NAT464_JAVA_PROXY_OPTS is not added
// either (nothing would refer to it).
func envOps(i int, c container) []Op {
	has := map[string]bool{}
	for _, e := range c.Env {
		has[e.Name] = true
	}
	var add []envVar
	for _, e := range ProxyEnv {
		if has[e.Name] || e.Name == "NAT464_JAVA_PROXY_OPTS" && has["JAVA_TOOL_OPTIONS"] {
			continue
		}
		add = append(add, e)
	}
	path := "/spec/containers/" + strconv.Itoa(i) + "/env"
	if len(add) == 0 {
		return nil
	}
	if c.Env == nil {
		return []Op{{"add", path, add}}
	}
	ops := make([]Op, len(add))
	for j, e := range add {
		ops[j] = Op{"add", path + "/-", e}
	}
	return ops
}

// dnsConfig is transparent egress's resolv.conf: the sidecar only, with the search list
// ClusterFirst would write for the namespace.
type dnsConfig struct {
	Nameservers []string `json:"nameservers"`
	Searches    []string `json:"searches"`
	Options     []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"options"`
}

// unprivilegedPorts is the sysctl that lets the non-root sidecar bind port 53 (and the egress
// ports), and its value.
const (
	unprivilegedPorts = "net.ipv4.ip_unprivileged_port_start"
	lowestPort        = "53"
)

// transparentOps point the pod's DNS at the sidecar, lower the unprivileged port start to 53
// and add the state volume. A dnsConfig of the pod's own is replaced (the sidecar must be its
// only nameserver); a sysctl of the same name is left alone if it is already at 53 or below.
func (c *Config) transparentOps(p *pod, namespace string) []Op {
	domain := cmp.Or(c.ClusterDomain, "cluster.local")
	dc := dnsConfig{Nameservers: []string{"127.0.0.1"},
		Searches: []string{namespace + ".svc." + domain, "svc." + domain, domain}}
	if namespace == "" {
		dc.Searches = dc.Searches[1:]
	}
	dc.Options = append(dc.Options, struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}{"ndots", "5"})
	ops := []Op{{"add", "/spec/dnsPolicy", "None"}, {"add", "/spec/dnsConfig", dc}}
	want := sysctl{unprivilegedPorts, lowestPort}
	switch sc := p.Spec.SecurityContext; {
	case sc == nil:
		ops = append(ops, Op{"add", "/spec/securityContext", map[string]any{"sysctls": []sysctl{want}}})
	case sc.Sysctls == nil:
		ops = append(ops, Op{"add", "/spec/securityContext/sysctls", []sysctl{want}})
	default:
		found := false
		for i, s := range sc.Sysctls {
			if s.Name != unprivilegedPorts {
				continue
			}
			found = true
			if v, err := strconv.Atoi(s.Value); err != nil || v > 53 {
				ops = append(ops, Op{"replace", "/spec/securityContext/sysctls/" + strconv.Itoa(i) + "/value", lowestPort})
			}
		}
		if !found {
			ops = append(ops, Op{"add", "/spec/securityContext/sysctls/-", want})
		}
	}
	vol := map[string]any{"name": stateName, "emptyDir": map[string]string{"sizeLimit": "16Mi"}}
	if !p.Spec.HasVolumes {
		ops = append(ops, Op{"add", "/spec/volumes", []any{vol}})
	} else {
		ops = append(ops, Op{"add", "/spec/volumes/-", vol})
	}
	return ops
}
