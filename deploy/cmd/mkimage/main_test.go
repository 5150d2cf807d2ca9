package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// staticBinary builds a tiny static Go program to stand in for the sidecar.
func staticBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bin")
	cmd := exec.Command("go", "build", "-o", out, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func TestRun(t *testing.T) {
	bin := staticBinary(t)
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		epoch    string
		wantErr  bool
		wantHelp bool
		wantOut  string
	}{
		{name: "ok", args: []string{"-binary", bin, "-version", "v1.0.0", "-o", filepath.Join(dir, "a.tar")},
			wantOut: "ghcr.io/nat464/nat464-sidecar:v1.0.0@sha256:"},
		{name: "named", args: []string{"-binary", bin, "-name", "registry.example/n", "-o", filepath.Join(dir, "b.tar")},
			epoch: "1700000000", wantOut: "registry.example/n:dev@sha256:"},
		{name: "no binary", args: []string{"-o", filepath.Join(dir, "c.tar")}, wantErr: true},
		{name: "stray argument", args: []string{"-binary", bin, "extra"}, wantErr: true},
		{name: "bad epoch", args: []string{"-binary", bin, "-o", filepath.Join(dir, "d.tar")}, epoch: "soon", wantErr: true},
		{name: "help", args: []string{"-h"}, wantErr: true, wantHelp: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout bytes.Buffer
			getenv := func(k string) string {
				if k == "SOURCE_DATE_EPOCH" {
					return tt.epoch
				}
				return ""
			}
			err := run(tt.args, getenv, &stdout, io.Discard)
			if (err != nil) != tt.wantErr || errors.Is(err, flag.ErrHelp) != tt.wantHelp {
				t.Fatalf("run: %v", err)
			}
			if !strings.Contains(stdout.String(), tt.wantOut) {
				t.Errorf("stdout %q, want %q", stdout.String(), tt.wantOut)
			}
		})
	}
}
