package deploy

import (
	"errors"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/nat464/nat464-sidecar/socks"
	corev1 "k8s.io/api/core/v1"
)

// proxyVars are the variables every app container must carry, with the URL schemes each may use.
// The lowercase twins are optional but, when present, must say the same.
var proxyVars = []struct {
	name    string
	schemes []string
}{
	{"ALL_PROXY", []string{"socks5h", "socks5", "socks4a", "http"}},
	{"HTTPS_PROXY", []string{"http", "socks5h", "socks5"}},
	{"HTTP_PROXY", httpProxySchemes()},
}

// httpProxySchemes are the schemes HTTP_PROXY may use. Through an http:// proxy, clients fetch
// plain http:// URLs with an absolute-form request ("GET http://host/ HTTP/1.1"), not CONNECT.
// As long as the sidecar's parser refuses that (405), HTTP_PROXY must name the SOCKS side.
func httpProxySchemes() []string {
	_, _, err := socks.ParseHTTPConnect([]byte("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"))
	if errors.Is(err, socks.ErrMethodNotAllowed) {
		return []string{"socks5h", "socks5"}
	}
	return []string{"http", "socks5h", "socks5"}
}

// noBypass are NO_PROXY entries an IPv4-only app must not have: in an IPv6-only cluster a
// Service's ClusterIP is IPv6, so in-cluster traffic needs the sidecar too.
var noBypass = []string{"*", "svc", "cluster.local", "svc.cluster.local"}

// checkAppEnv wants every app container pointed at the sidecar's --proxy-listen address by the
// proxy variables, NO_PROXY (loopback only) and JAVA_TOOL_OPTIONS.
func checkAppEnv(spec *corev1.PodSpec, sc sidecar, is *issues) {
	if sc.cfg.ProxyListen == "" {
		is.add("proxy-env", "--proxy-listen is off but the app containers need the proxy")
		return
	}
	proxy, err := netip.ParseAddrPort(sc.cfg.ProxyListen)
	if err != nil {
		is.add("proxy-env", "--proxy-listen=%q: %v", sc.cfg.ProxyListen, err)
		return
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		for _, v := range proxyVars {
			checkProxyURL(c.Name, v.name, env[v.name], v.schemes, proxy, is)
			if lower, ok := env[strings.ToLower(v.name)]; ok && lower != env[v.name] {
				is.add("proxy-env", "container %q: %s differs from %s", c.Name, strings.ToLower(v.name), v.name)
			}
		}
		checkNoProxy(c.Name, env, is)
		checkJava(c.Name, env["JAVA_TOOL_OPTIONS"], proxy, is)
	}
}

func checkProxyURL(container, name, value string, schemes []string, proxy netip.AddrPort, is *issues) {
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
	if !sameHost(u.Hostname(), proxy.Addr()) || u.Port() != strconv.Itoa(int(proxy.Port())) {
		is.add("proxy-env", "container %q: %s=%q does not point at --proxy-listen %s", container, name, value, proxy)
	}
}

// sameHost accepts the proxy's own address, or "localhost" for a loopback proxy.
func sameHost(host string, addr netip.Addr) bool {
	if host == "localhost" {
		return addr.IsLoopback()
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a == addr
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
	var entries []string
	for _, e := range strings.Split(v, ",") {
		entries = append(entries, strings.TrimPrefix(strings.TrimSpace(e), "."))
	}
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

// checkJava wants the SOCKS system properties on the proxy; https.proxyHost/Port, if given, on
// the proxy too; and no http.proxyHost while the proxy refuses absolute-form requests.
func checkJava(container, opts string, proxy netip.AddrPort, is *issues) {
	props := map[string]string{}
	for _, f := range strings.Fields(opts) {
		if k, v, ok := strings.Cut(strings.TrimPrefix(f, "-D"), "="); ok && strings.HasPrefix(f, "-D") {
			props[k] = v
		}
	}
	host, port := proxy.Addr().String(), strconv.Itoa(int(proxy.Port()))
	if props["socksProxyHost"] != host || props["socksProxyPort"] != port {
		is.add("proxy-env", "container %q: JAVA_TOOL_OPTIONS=%q, want -DsocksProxyHost=%s -DsocksProxyPort=%s",
			container, opts, host, port)
	}
	if h, ok := props["https.proxyHost"]; ok && (h != host || props["https.proxyPort"] != port) {
		is.add("proxy-env", "container %q: https.proxyHost/Port in JAVA_TOOL_OPTIONS do not point at %s", container, proxy)
	}
	if _, ok := props["http.proxyHost"]; ok && !slices.Contains(httpProxySchemes(), "http") {
		is.add("proxy-env", "container %q: http.proxyHost sends absolute-form requests, which the proxy refuses", container)
	}
}
