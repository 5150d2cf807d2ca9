package main

import (
	"strings"
	"testing"
	"time"
)

// The UDP load runs against the echo app directly (no binaries needed) and its row reads.
func TestUDPLoadDirect(t *testing.T) {
	app, stop, err := udpEcho()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	r := udpLoad(app, 0, 64, 4, 50*time.Millisecond, 200*time.Millisecond)
	r.Contender = "direct"
	if r.Datagrams == 0 || r.P50 <= 0 || r.P99 < r.P50 || r.CPUUsPerDgm != -1 {
		t.Fatalf("row %+v", r)
	}
	if md := r.markdown(); !strings.HasPrefix(md, "| direct | 64 B | 4 | ") || !strings.HasSuffix(md, "| - |") {
		t.Errorf("markdown %q", md)
	}
}
