package main

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// Fields after the name: state ppid pgrp session tty tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime ...
	tail := " S 42 1 1 0 -1 0 0 0 0 0 150 50 30 20 20 0 1 0"
	tests := []struct {
		name    string
		in      string
		ppid    int
		cpu     float64
		wantErr error
	}{
		{"plain", "123 (haproxy)" + tail, 42, 2.5, nil},
		{"bad state", "123 (x) SS 42 1 1 0 -1 0 0 0 0 0 1 1 1 1", 0, 0, errProcStat},
		{"name with spaces and parens", "123 (a) b (c))" + tail, 42, 2.5, nil},
		{"no paren", "123 haproxy" + tail, 0, 0, errProcStat},
		{"truncated", "123 (x) S 42 1", 0, 0, errProcStat},
		{"garbage ticks", "123 (x) S 42 1 1 0 -1 0 0 0 0 0 a b c d", 0, 0, errProcStat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if err == nil && (got.ppid != tt.ppid || got.cpu != tt.cpu) {
				t.Fatalf("got ppid %d cpu %v, want %d %v", got.ppid, got.cpu, tt.ppid, tt.cpu)
			}
		})
	}
}

func TestSampleTreeAndProcs(t *testing.T) {
	checkLeaks(t)
	var ps Procs
	defer ps.StopAll()
	p, err := ps.Start("sleep", []string{"/bin/sh", "-c", "sleep 60 & sleep 60; wait"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	self, err := sampleTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.Procs < 2 || self.RSSKiB <= 0 || self.PSSKiB <= 0 || self.FDs <= 0 {
		t.Fatalf("sample of the test process and its children: %+v", self)
	}
	// The shell forks its sleeps a moment after it starts: wait for them (bounded).
	var tree []int
	for deadline := time.Now().Add(5 * time.Second); ; {
		tree, err = procTree(p.PID())
		if err != nil || len(tree) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || len(tree) < 2 {
		t.Fatalf("tree of the child: %v, %v; want the shell and its sleeps", tree, err)
	}
	ps.Stop(p)
	if !p.Exited() {
		t.Fatal("child still running after Stop")
	}
	for _, pid := range tree[1:] {
		if st, err := procStat(pid); err == nil && st.state != 'Z' {
			t.Errorf("pid %d of the child's group survived Stop (state %c)", pid, st.state)
		}
	}
	if groupAlive(p.PID()) {
		t.Error("groupAlive after Stop")
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("123 (haproxy) S 42 1 1 0 -1 0 0 0 0 0 150 50 30 20 20 0 1 0"))
	f.Add([]byte("1 ((x)) R 0"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseProcStat(b); err == nil && !bytes.Contains(b, []byte(")")) {
			t.Fatalf("parsed %q, which has no command name", b)
		}
	})
}
