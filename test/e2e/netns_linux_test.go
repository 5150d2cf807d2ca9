//go:build e2e && linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dialIn connects from inside network namespace ns: the socket is created on an OS thread that
// has joined ns, and keeps that namespace for its whole life wherever it is used afterwards.
func dialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread is never unlocked unless it is back in its own namespace; a locked thread
		// whose goroutine ends is destroyed, so a failed restore cannot leak the namespace.
		runtime.LockOSThread()
		c, err, restored := dialOnThread(ctx, ns, network, addr)
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func dialOnThread(ctx context.Context, ns, network, addr string) (c net.Conn, err error, restored bool) {
	restored, err = onThreadIn(ns, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err, restored
}

// onThreadIn runs open on this (locked) thread after it joined ns, then joins the thread's own
// namespace again; restored reports whether that worked. Sockets open makes keep ns.
func onThreadIn(ns string, open func() error) (restored bool, err error) {
	self, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
	if err != nil {
		return true, err
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return true, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return true, fmt.Errorf("e2e: setns %s: %w", ns, err)
	}
	err = open()
	return unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil, err
}

// httpIn is an HTTP client whose connections are made inside ns. Close its idle connections
// (client.CloseIdleConnections) when done; the suite checks for leaked goroutines.
func httpIn(ns string) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, ns, network, addr)
		},
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// get fetches url from inside ns and returns status and body.
func get(ctx context.Context, ns, url string) (int, string, error) {
	c := httpIn(ns)
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// run executes args inside lab host ns (a full namespace name) with a bound and returns
// stdout; stderr is part of the error.
func run(ctx context.Context, ns string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Env = cleanEnv()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%q: %w: %s", args, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), err
}

// blackhole drops forwarded packets to addr in the router until the test ends.
func blackhole(t *testing.T, addr string) {
	t.Helper()
	if out, err := labCmd("blackhole", addr); err != nil {
		t.Fatalf("lab.sh blackhole %s: %v\n%s", addr, err, out)
	}
	t.Cleanup(func() {
		if out, err := labCmd("unblackhole", addr); err != nil {
			t.Errorf("lab.sh unblackhole %s: %v\n%s", addr, err, out)
		}
	})
}

// labMode switches the lab to mode (wkp or nsp) and back to wkp when the test ends.
func labMode(t *testing.T, mode string) {
	t.Helper()
	if out, err := labCmd("up", "--mode", mode); err != nil {
		t.Fatalf("lab.sh up --mode %s: %v\n%s", mode, err, out)
	}
	t.Cleanup(func() {
		if out, err := labCmd("up", "--mode", "wkp"); err != nil {
			t.Errorf("lab.sh up --mode wkp: %v\n%s", err, out)
		}
	})
}
