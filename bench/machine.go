package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Machine is what the report says about where it ran.
type Machine struct {
	CPUModel  string            `json:"cpu_model"`
	Cores     int               `json:"cores"`
	Kernel    string            `json:"kernel"`
	GoVersion string            `json:"go_version"`
	Date      time.Time         `json:"date"`
	Sidecar   string            `json:"sidecar,omitempty"`
	Commit    string            `json:"commit,omitempty"` // of the sidecar's work tree
	Versions  map[string]string `json:"versions,omitempty"`
}

func machineFacts(sidecar string, cs []*Contender) Machine {
	m := Machine{
		CPUModel:  cpuModel(),
		Cores:     runtime.NumCPU(),
		Kernel:    firstLine(readFile("/proc/sys/kernel/osrelease")),
		GoVersion: runtime.Version(),
		Date:      time.Now().UTC(),
		Sidecar:   sidecar,
		Versions:  map[string]string{},
	}
	if sidecar != "" {
		out, err := exec.Command("git", "-C", filepath.Dir(sidecar), "rev-parse", "--short", "HEAD").Output()
		if err == nil {
			m.Commit = strings.TrimSpace(string(out))
		}
	}
	if m.Kernel == "" {
		m.Kernel = runtime.GOOS
	}
	for _, c := range cs {
		name := filepath.Base(c.Bin)
		if _, done := m.Versions[name]; !c.Peer || done {
			continue
		}
		if v := peerVersion(name, c.Bin); v != "" {
			m.Versions[name] = v
		}
	}
	return m
}

func cpuModel() string {
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// peerVersion asks a peer for its version (best effort, never fatal): the
// first line of its answer that holds the peer's marker.
func peerVersion(name, bin string) string {
	var flag, marker string
	switch name {
	case "haproxy":
		flag, marker = "-v", "version"
	case "socat":
		flag, marker = "-V", "version"
	case "danted":
		flag, marker = "-v", "dante v"
	case "tinyproxy":
		flag, marker = "-v", "tinyproxy "
	default:
		return ""
	}
	out, _ := exec.Command(bin, flag).CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(strings.ToLower(l), marker) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func firstLine(s string) string {
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
