//go:build chaos && linux

package chaos

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// appName is the app's name in the fixture's hosts file.
const appName = "app.chaos.test"

// fixture is an app and a sidecar in front of it: an inbound mapping [::1]:inPort -> the app,
// and the proxy on 127.0.0.1, which resolves appName through its own hosts file (no DNS, no
// NAT64: the app is on 127.0.0.1).
type fixture struct {
	app     *app
	appPort int
	inPort  int
	proxy   string // 127.0.0.1:P
	s       *sidecar
}

// fixtureArgs picks the ports and writes the files; the caller starts the sidecar with them.
func newFixtureArgs(t *testing.T, eng string) (*fixture, []string) {
	t.Helper()
	f := &fixture{app: newApp(t), inPort: int(testnet.FreePort(t))}
	f.appPort, _ = strconv.Atoi(f.app.addr[len("127.0.0.1:"):])
	f.proxy = "127.0.0.1:" + strconv.Itoa(int(testnet.FreePort(t)))
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 "+appName+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(resolv, []byte("nameserver ::1\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f, []string{"--engine", eng,
		"--inbound", fmt.Sprintf("[::1]:%d=%s", f.inPort, f.app.addr), "--proxy-listen", f.proxy,
		"--hosts-file", hosts, "--resolv-conf", resolv, "--nat64-prefix", "none"}
}

// newFixture starts the sidecar (through wrap when not nil) with the fixture's args plus extra.
func newFixture(t *testing.T, eng string, wrap []string, extra ...string) *fixture {
	t.Helper()
	f, args := newFixtureArgs(t, eng)
	f.s = startSidecar(t, wrap, append(args, extra...)...)
	return f
}

func (f *fixture) inbound() dialer   { return inboundDialer(f.inPort) }
func (f *fixture) socksName() dialer { return socksDialer(f.proxy, appName, f.appPort) }
func (f *fixture) socksIP() dialer   { return socksDialer(f.proxy, "127.0.0.1", f.appPort) }
func (f *fixture) inAddr() string    { return net.JoinHostPort("::1", strconv.Itoa(f.inPort)) }
