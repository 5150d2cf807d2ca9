package deploy

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/nat464/nat464-sidecar/config"
	corev1 "k8s.io/api/core/v1"
)

// javaOptsVar holds the proxy's JVM options; JAVA_TOOL_OPTIONS refers to it with $(...), so an
// app can put its own options beside them instead of losing either.
const javaOptsVar = "NAT464_JAVA_PROXY_OPTS"

// proxyVars are the variables every app container must carry, with the URL schemes each may use.
// The lowercase twins are optional but, when present, must say the same. HTTP(S)_PROXY must be
// http://: Node 24 with NODE_USE_ENV_PROXY=1 exits at start on a socks5h:// value, and wget and
// Python's urllib refuse it.
var proxyVars = []struct {
	name    string
	schemes []string
}{
	{"ALL_PROXY", []string{"socks5h", "socks5", "socks4a", "http"}},
	{"HTTPS_PROXY", []string{"http"}},
	{"HTTP_PROXY", []string{"http"}},
}

// proxyAddrs are the addresses of --proxy-listen.
func proxyAddrs(cfg *config.Config) ([]netip.AddrPort, error) {
	if len(cfg.ProxyListen) == 0 {
		return nil, errors.New("the proxy is off")
	}
	return cfg.ProxyListen, nil
}

// noBypass are NO_PROXY entries an IPv4-only app must not have: in an IPv6-only cluster a
// Service's ClusterIP is IPv6, so in-cluster traffic needs the sidecar too.
var noBypass = []string{"*", "svc", "cluster.local", "svc.cluster.local"}

// checkAppEnv wants every app container pointed at the sidecar's --proxy-listen addresses by the
// proxy variables, NO_PROXY (loopback only) and JAVA_TOOL_OPTIONS, all read as kubelet hands them
// to the container: after $(VAR) expansion.
func checkAppEnv(spec *corev1.PodSpec, sc sidecar, is *issues) {
	if len(sc.cfg.ProxyListen) == 0 {
		is.add("proxy-env", "--proxy-listen is off but the app containers need the proxy")
		return
	}
	addrs, err := proxyAddrs(sc.cfg)
	if err != nil {
		is.add("proxy-env", "--proxy-listen=%q: %v", sc.cfg.ProxyListen, err)
		return
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		env, unresolved := expandEnv(c.Env)
		for _, name := range slices.Sorted(maps.Keys(unresolved)) {
			is.add("env", "container %q: %s refers to $(%s), which is not defined earlier in env: kubelet passes it on as written",
				c.Name, name, strings.Join(unresolved[name], "), $("))
		}
		for _, v := range proxyVars {
			checkProxyURL(c.Name, v.name, env[v.name], v.schemes, addrs, is)
			if lower, ok := env[strings.ToLower(v.name)]; ok && lower != env[v.name] {
				is.add("proxy-env", "container %q: %s differs from %s", c.Name, strings.ToLower(v.name), v.name)
			}
		}
		checkNoProxy(c.Name, env, is)
		if env["NODE_USE_ENV_PROXY"] != "1" {
			is.add("proxy-env", "container %q: NODE_USE_ENV_PROXY is not 1: Node.js 24+ ignores HTTP(S)_PROXY without it", c.Name)
		}
		checkJava(c, env, is)
	}
}

func checkProxyURL(container, name, value string, schemes []string, addrs []netip.AddrPort, is *issues) {
	if value == "" {
		is.add("proxy-env", "container %q: %s is not set", container, name)
		return
	}
	u, err := url.Parse(value)
	if err != nil {
		is.add("proxy-env", "container %q: %s=%q: %v", container, name, value, err)
		return
	}
	if !slices.Contains(schemes, u.Scheme) {
		is.add("proxy-env", "container %q: %s=%q: scheme must be one of %v", container, name, value, schemes)
	}
	checkProxyHost(container, name+"="+value, u.Hostname(), u.Port(), addrs, is)
}

// checkProxyHost wants host:port to reach the proxy from every client. "localhost" is the one
// host that does: the kubelet's /etc/hosts maps it to 127.0.0.1 and ::1, and glibc's getaddrinfo
// with AI_ADDRCONFIG keeps only ::1 in an IPv6-only pod (whose only IPv4 address is loopback), so
// the proxy must listen on both. The same rule refuses an IPv4 literal, even 127.0.0.1.
func checkProxyHost(container, what, host, port string, addrs []netip.AddrPort, is *issues) {
	listens := func(a netip.Addr) bool {
		return slices.ContainsFunc(addrs, func(ap netip.AddrPort) bool { return ap.Addr() == a && fmt.Sprint(ap.Port()) == port })
	}
	if host == "localhost" {
		var missing []string
		for _, a := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
			if !listens(a) {
				missing = append(missing, netip.AddrPortFrom(a, 0).String())
			}
		}
		switch {
		case len(missing) == 0:
		default:
			is.add("proxy-env", "container %q: %s: localhost is 127.0.0.1 or ::1 depending on AI_ADDRCONFIG, "+
				"but --proxy-listen=%s lacks %s at port %s", container, what, joinAddrs(addrs), strings.Join(missing, ", "), port)
		}
		return
	}
	a, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		is.add("proxy-env", "container %q: %s: want localhost, which /etc/hosts maps to the loopbacks", container, what)
	case a.Is4():
		is.add("proxy-env", "container %q: %s: getaddrinfo with AI_ADDRCONFIG refuses IPv4 addresses in an IPv6-only pod, "+
			"even a literal; use localhost", container, what)
	case !listens(a):
		is.add("proxy-env", "container %q: %s does not point at --proxy-listen %s", container, what, joinAddrs(addrs))
	}
}

func joinAddrs(addrs []netip.AddrPort) string {
	var s []string
	for _, a := range addrs {
		s = append(s, a.String())
	}
	return strings.Join(s, ",")
}

func checkNoProxy(container string, env map[string]string, is *issues) {
	v, ok := env["NO_PROXY"]
	if !ok {
		is.add("proxy-env", "container %q: NO_PROXY is not set", container)
		return
	}
	if lower, ok := env["no_proxy"]; ok && lower != v {
		is.add("proxy-env", "container %q: no_proxy differs from NO_PROXY", container)
	}
	entries := noProxyEntries(v)
	for _, want := range []string{"localhost", "127.0.0.1", "::1"} {
		if !slices.Contains(entries, want) {
			is.add("proxy-env", "container %q: NO_PROXY lacks %s", container, want)
		}
	}
	for _, e := range entries {
		if slices.Contains(noBypass, e) || strings.HasSuffix(e, ".svc") || strings.HasSuffix(e, ".cluster.local") {
			is.add("proxy-env", "container %q: NO_PROXY bypasses %q, which is IPv6-only for this app", container, e)
		}
	}
}

// noProxyEntries splits NO_PROXY into its entries, less a leading dot.
func noProxyEntries(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimPrefix(strings.TrimSpace(e), "."); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// checkJava wants JAVA_TOOL_OPTIONS built from $(NAT464_JAVA_PROXY_OPTS) and, once expanded,
// carrying every JVM proxy property (javaProblems).
func checkJava(c *corev1.Container, env map[string]string, is *issues) {
	raw := ""
	for _, e := range c.Env {
		if e.Name == "JAVA_TOOL_OPTIONS" {
			raw = e.Value
		}
	}
	if !strings.Contains(raw, "$("+javaOptsVar+")") {
		is.add("proxy-env", "container %q: JAVA_TOOL_OPTIONS=%q: want $(%s), followed by the app's own options if any", c.Name, raw, javaOptsVar)
	}
	for _, p := range javaProblems(env) {
		is.add("proxy-env", "container %q: %s", c.Name, p)
	}
}

// javaProps are the -Dkey=value system properties in a JAVA_TOOL_OPTIONS value. The JVM splits
// the value at white space, with no shell in between.
func javaProps(opts string) map[string]string {
	props := map[string]string{}
	for _, f := range strings.Fields(opts) {
		if k, v, ok := strings.Cut(strings.TrimPrefix(f, "-D"), "="); ok && strings.HasPrefix(f, "-D") {
			props[k] = v
		}
	}
	return props
}

// javaProblems checks an expanded environment's JAVA_TOOL_OPTIONS against its HTTP_PROXY and
// NO_PROXY. JVMs read no proxy variables, and each of their stacks wants its own properties:
// http.* for plain http:// URLs, https.* for CONNECT (HttpURLConnection, java.net.http, Netty,
// gRPC-Java), socks* for bare java.net.Socket. All must name HTTP_PROXY's host and port, and
// http.nonProxyHosts (which https uses too) must say what NO_PROXY says, in Java's syntax.
func javaProblems(env map[string]string) []string {
	opts := env["JAVA_TOOL_OPTIONS"]
	u, err := url.Parse(env["HTTP_PROXY"])
	if err != nil || u.Hostname() == "" {
		return []string{fmt.Sprintf("HTTP_PROXY=%q gives no host:port for JAVA_TOOL_OPTIONS to match", env["HTTP_PROXY"])}
	}
	props := javaProps(opts)
	var out []string
	for _, p := range [][2]string{{"http.proxyHost", "http.proxyPort"}, {"https.proxyHost", "https.proxyPort"}, {"socksProxyHost", "socksProxyPort"}} {
		if props[p[0]] != u.Hostname() || props[p[1]] != u.Port() {
			out = append(out, fmt.Sprintf("JAVA_TOOL_OPTIONS=%q: want -D%s=%s -D%s=%s (HTTP_PROXY's host and port)",
				opts, p[0], u.Hostname(), p[1], u.Port()))
		}
	}
	got := strings.Split(props["http.nonProxyHosts"], "|")
	want := javaNonProxyHosts(env["NO_PROXY"])
	slices.Sort(got)
	if !slices.Equal(got, want) {
		out = append(out, fmt.Sprintf("JAVA_TOOL_OPTIONS: http.nonProxyHosts=%q, want %q (NO_PROXY in Java's syntax)",
			props["http.nonProxyHosts"], strings.Join(want, "|")))
	}
	return out
}

// javaNonProxyHosts is NO_PROXY as http.nonProxyHosts patterns, sorted: "|" between entries, an
// IPv6 literal in brackets (Java matches the URL's host as written), ".example.com" as
// "*.example.com".
func javaNonProxyHosts(noProxy string) []string {
	var out []string
	for _, e := range strings.Split(noProxy, ",") {
		e = strings.TrimSpace(e)
		switch a, err := netip.ParseAddr(e); {
		case e == "":
			continue
		case err == nil && a.Is6():
			e = "[" + e + "]"
		case strings.HasPrefix(e, "."):
			e = "*" + e
		}
		out = append(out, e)
	}
	slices.Sort(out)
	return out
}
