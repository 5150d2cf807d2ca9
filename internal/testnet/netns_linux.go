package testnet

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace of a test's own (named after the test process, so parallel runs
// do not collide), with lo up and the extra addresses it was given on lo. Sockets made by its
// methods live in it; the sidecar runs in it through Wrap. Only root can make one.
type Netns struct {
	Name string
	// Wrap runs a command inside the namespace: Launcher.Wrap.
	Wrap []string
}

// NewNetns creates the namespace, brings lo up and adds addrs (CIDR, e.g. 2001:db8:16::1/128)
// to lo; the test's cleanup deletes it. It skips when not root (a failure under CI=true).
func NewNetns(t testing.TB, tag string, addrs ...string) *Netns {
	t.Helper()
	RequireLinux(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root for a network namespace and CI=true forbids skipping it")
		}
		t.Skip("needs root for a network namespace")
	}
	ip := RequireTool(t, "ip")
	n := &Netns{Name: fmt.Sprintf("nat464-t-%s-%d", tag, os.Getpid())}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	run("netns", "add", n.Name)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", n.Name).Run() })
	run("-n", n.Name, "link", "set", "lo", "up")
	for _, a := range addrs {
		run("-n", n.Name, "addr", "add", a, "dev", "lo", "nodad")
	}
	n.Wrap = []string{ip, "netns", "exec", n.Name}
	return n
}

// in runs open on a locked thread that joined the namespace, then returns the thread to its
// own namespace; a thread that cannot go back is not unlocked, so the runtime retires it.
func (n *Netns) in(open func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + n.Name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		err = open()
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Dial connects from inside the namespace, from local (host, port 0) when it is not empty.
func (n *Netns) Dial(ctx context.Context, network, local, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.in(func() (err error) {
		var d net.Dialer
		if local != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
		}
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen listens inside the namespace.
func (n *Netns) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.in(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}
