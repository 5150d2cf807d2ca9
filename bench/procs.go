package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a child gets between SIGTERM and SIGKILL.
const stopGrace = 3 * time.Second

// readyTimeout bounds the start of any child.
const readyTimeout = 10 * time.Second

// Proc is one child the driver started. It runs in its own process group;
// Stop signals the group, so whatever it forked goes too.
type Proc struct {
	Name string
	pid  int
	cmd  *exec.Cmd
	done chan struct{}
	log  *tailBuffer
	err  error
}

// PID returns the child's process id.
func (p *Proc) PID() int { return p.pid }

// Exited reports whether the child has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Log returns the tail of the child's stderr (and stdout, unless piped).
func (p *Proc) Log() string { return p.log.String() }

// Stop sends SIGTERM to the child's group, then SIGKILL after stopGrace,
// and waits for the child.
func (p *Proc) Stop() {
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	}
	// The leader may have exited while forked members linger.
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
	// SIGKILL is delivered asynchronously: wait (bounded) until every
	// member of the group is gone, so the next contender starts clean.
	deadline := time.Now().Add(stopGrace)
	for groupAlive(pgid) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// Procs tracks every child so that StopAll leaves nothing running.
type Procs struct {
	mu   sync.Mutex
	live []*Proc
}

// Start runs argv as a tracked child. If stdout is nil the child's stdout
// goes to its log.
func (ps *Procs) Start(name string, argv []string, stdout io.Writer) (*Proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = childAttr()
	lb := &tailBuffer{max: 8 << 10}
	cmd.Stderr = lb
	cmd.Stdout = lb
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	p := &Proc{Name: name, pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{}), log: lb}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.live = append(ps.live, p)
	ps.mu.Unlock()
	return p, nil
}

// Stop stops p and forgets it.
func (ps *Procs) Stop(p *Proc) {
	p.Stop()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i, q := range ps.live {
		if q == p {
			ps.live = append(ps.live[:i], ps.live[i+1:]...)
			break
		}
	}
}

// StopAll stops every child still tracked.
func (ps *Procs) StopAll() {
	ps.mu.Lock()
	live := ps.live
	ps.live = nil
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range live {
		wg.Go(p.Stop)
	}
	wg.Wait()
}

// startReady starts a child that prints readyPrefix and its address as
// its first line (bench serve, bench dns) and returns that address.
func (ps *Procs) startReady(ctx context.Context, name string, argv []string) (*Proc, string, error) {
	pr, pw := io.Pipe()
	p, err := ps.Start(name, argv, pw)
	if err != nil {
		return nil, "", err
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		first := true
		for sc.Scan() {
			if first {
				line <- sc.Text()
				first = false
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() { <-p.done; pw.Close() }()
	select {
	case l := <-line:
		addr, ok := strings.CutPrefix(l, readyPrefix)
		if !ok {
			ps.Stop(p)
			return nil, "", fmt.Errorf("%w: %s said %q", errNotReady, name, l)
		}
		return p, addr, nil
	case <-time.After(readyTimeout):
	case <-ctx.Done():
	}
	ps.Stop(p)
	return nil, "", fmt.Errorf("%w: %s: %s", errNotReady, name, p.Log())
}

// waitDial polls until addr accepts a TCP connection, p exits, or the
// ready timeout passes.
func waitDial(ctx context.Context, p *Proc, addr string) error {
	return waitFor(ctx, p, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// waitHTTP polls until GET url answers 200.
func waitHTTP(ctx context.Context, p *Proc, url string) error {
	cl := &http.Client{Timeout: time.Second}
	return waitFor(ctx, p, func() bool {
		resp, err := cl.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func waitFor(ctx context.Context, p *Proc, ok func() bool) error {
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok() {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%w: %s: %v: %s", errExited, p.Name, p.err, p.Log())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s: %s", errNotReady, p.Name, p.Log())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// freePort returns a TCP port that is free on the given network's loopback
// or wildcard address (the caller binds it right after).
func freePort(network, host string) (int, error) {
	ln, err := net.Listen(network, net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
