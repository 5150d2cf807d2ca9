package deploy

// Running the real sidecar binary on loopback for the deploy tests, and the few clients
// (TCP echo, SOCKS5 CONNECT, a DNS question) that make it export its labelled series.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sidecarPorts are the loopback ports of one run: targets nothing listens on (closed4, closed6,
// closedUDP, silentDNS) and free ports for the sidecar's listeners.
type sidecarPorts struct {
	closed4, closed6, closedUDP, silentDNS        int
	inOK, inBad, inUDP, proxy, admin, dns, egress int
}

func pickPorts(t *testing.T) sidecarPorts {
	t.Helper()
	return sidecarPorts{
		closed4: freePort(t, "tcp4", "127.0.0.1:0"), closed6: freePort(t, "tcp6", "[::1]:0"),
		closedUDP: freePort(t, "udp4", "127.0.0.1:0"), silentDNS: freePort(t, "udp4", "127.0.0.1:0"),
		inOK: freePort(t, "tcp6", "[::1]:0"), inBad: freePort(t, "tcp6", "[::1]:0"), inUDP: freePort(t, "udp6", "[::1]:0"),
		proxy: freePort(t, "tcp4", "127.0.0.1:0"), admin: freePort(t, "tcp6", "[::1]:0"),
		dns: freeTCPAndUDPPort(t, "127.0.0.1"), egress: freePort(t, "tcp4", "127.0.0.1:0"),
	}
}

// startSidecar starts bin with args and waits for its /startupz at admin. The test's cleanup
// stops it (SIGTERM to its PID, SIGKILL if it hangs). If it exits during start-up, the error
// carries its log.
func startSidecar(t *testing.T, bin string, args []string, admin string) (string, error) {
	t.Helper()
	logs := &lockedBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sidecar log:\n%s", logs.String())
		}
	})
	if err := waitHTTP(admin+"/startupz", exited, 20*time.Second); err != nil {
		return "", fmt.Errorf("%w\n%s", err, logs.String())
	}
	return admin, nil
}

// lockedBuffer is a bytes.Buffer the sidecar's output goroutines and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freeTCPAndUDPPort returns a port free for both TCP and UDP on the loopback address ip.
func freeTCPAndUDPPort(t *testing.T, ip string) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		c, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		l.Close()
		if err == nil {
			c.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// buildSidecarBinary builds ./cmd/nat464-sidecar of the root module, as `make build` does.
func buildSidecarBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nat464-sidecar")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/nat464-sidecar")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/nat464-sidecar: %v\n%s", err, out)
	}
	return bin
}

// cannotRun skips a test this machine cannot run, but fails it under CI=true, where a skipped
// check would look like a passed one.
func cannotRun(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but this test cannot run: %s", reason)
	}
	t.Skip("SKIP: this test did NOT run: " + reason)
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// freePort binds a loopback addr ("127.0.0.1:0", "[::1]:0"), notes the port and closes it
// again: nothing listens there afterwards.
func freePort(t *testing.T, network, addr string) int {
	t.Helper()
	if strings.HasPrefix(network, "udp") {
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// echoServer serves TCP echo on addr until the test ends and returns its address.
func echoServer(t *testing.T, network, addr string) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr)
}

// echoOnce connects to addr and wants an echo of what it sends.
func echoOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return echoOn(c)
}

func echoOn(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return fmt.Errorf("echo %q", buf)
	}
	return nil
}

// drain connects to addr and reads until the sidecar closes or resets the connection.
func drain(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		// The splice engine may reset before connect(2) returns: the failure was counted.
		t.Logf("connect %s: %v", addr, err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	_, _ = io.Copy(io.Discard, c)
}

// socks5Connect sends a SOCKS5 CONNECT for host:port (no authentication) and returns the
// connection and the reply code.
func socks5Connect(proxy, host string, port int) (net.Conn, byte, error) {
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	fail := func(err error) (net.Conn, byte, error) { c.Close(); return nil, 0, err }
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return fail(err)
	}
	greet := make([]byte, 2)
	if _, err := io.ReadFull(c, greet); err != nil || greet[0] != 5 || greet[1] != 0 {
		return fail(fmt.Errorf("greeting %v: %v", greet, err))
	}
	req := append([]byte{5, 1, 0, 3, byte(len(host))}, host...)
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	if _, err := c.Write(req); err != nil {
		return fail(err)
	}
	head := make([]byte, 4)
	if _, err := io.ReadFull(c, head); err != nil {
		return fail(err)
	}
	n := map[byte]int{1: 4, 4: 16}[head[3]]
	if head[3] == 3 {
		l := make([]byte, 1)
		if _, err := io.ReadFull(c, l); err != nil {
			return fail(err)
		}
		n = int(l[0])
	}
	if _, err := io.ReadFull(c, make([]byte, n+2)); err != nil {
		return fail(err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, head[1], nil
}

// dnsQuestion asks server for name's A record over UDP and wants an answer to it.
func dnsQuestion(server, name string) error {
	q := []byte{0x4e, 0x36, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0} // ID, RD, one question
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		q = append(append(q, byte(len(l))), l...)
	}
	q = append(q, 0, 0, 1, 0, 1) // root, type A, class IN
	c, err := net.Dial("udp", server)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(q); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if n < 12 || !bytes.Equal(buf[:2], q[:2]) || buf[2]&0x80 == 0 {
		return fmt.Errorf("not an answer to the question: % x", buf[:n])
	}
	return nil
}

func httpGet(url string) ([]byte, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	return body, err
}

// waitHTTP polls url until it answers 200, the process exits, or timeout passes.
func waitHTTP(url string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := httpGet(url)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("the sidecar exited")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}
