package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// A bad flag prints its error once and one line pointing at --help, not the whole usage, and
// exits 2; --help prints the usage and exits 0.
func TestBadFlagPrintsErrorOnce(t *testing.T) {
	const hint = "Run 'nat464-sidecar --help' for the flags."
	for _, tt := range []struct {
		name string
		args []string
		msg  string // the error, which must appear exactly once
	}{
		{"flag value", []string{"--idle-timeout", "x"}, `invalid value "x" for flag -idle-timeout`},
		{"unknown flag", []string{"--bogus"}, "flag provided but not defined: -bogus"},
		{"checked value", []string{"--engine", "x"}, `invalid value "x" for --engine`},
		{"argument", []string{"stray"}, `unexpected argument "stray"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runBinary(t, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if n := strings.Count(stderr, tt.msg); n != 1 {
				t.Errorf("error %q printed %d times, want once:\n%s", tt.msg, n, stderr)
			}
			if strings.Count(stderr, hint) != 1 || strings.Contains(stderr, "Usage of") || strings.Contains(stderr, "-admin-listen") {
				t.Errorf("want the error and the --help hint only, got:\n%s", stderr)
			}
			if lines := strings.Count(stderr, "\n"); lines != 2 {
				t.Errorf("stderr has %d lines, want 2:\n%s", lines, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout: %q, want nothing", stdout)
			}
		})
	}
	t.Run("help", func(t *testing.T) {
		code, _, stderr := runBinary(t, "--help")
		if code != exitOK {
			t.Errorf("exit %d, want %d", code, exitOK)
		}
		if !strings.HasPrefix(stderr, "Usage of nat464-sidecar:\n") || !strings.Contains(stderr, "-admin-listen") ||
			strings.Contains(stderr, hint) {
			t.Errorf("--help does not print the usage alone:\n%s", stderr)
		}
	})
}

// runBinary runs the sidecar binary to completion with args and an empty environment.
func runBinary(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(sidecarBin, args...)
	cmd.Env = []string{}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}
