package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procSupported says whether sampleTree works on this OS.
const procSupported = true

// sampleTree measures pid and all its descendants: resident and
// proportional memory, open fds and CPU time (their own, plus that of
// children they have reaped).
func sampleTree(pid int) (ProcSample, error) {
	pids, err := procTree(pid)
	if err != nil {
		return ProcSample{}, err
	}
	var s ProcSample
	for _, p := range pids {
		st, err := procStat(p)
		if err != nil {
			if p == pid {
				return ProcSample{}, err
			}
			continue // a child that just exited
		}
		s.CPUSeconds += st.cpu
		s.RSSKiB += procKiB(p, "status", "VmRSS:")
		s.PSSKiB += procKiB(p, "smaps_rollup", "Pss:")
		if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p)); err == nil {
			s.FDs += len(ents)
		}
		s.Procs++
	}
	return s, nil
}

type procStatLine struct {
	state byte
	ppid  int
	pgrp  int
	cpu   float64
}

// procStat reads the parent and the CPU seconds (utime+stime+cutime+cstime)
// of one process.
func procStat(pid int) (procStatLine, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStatLine{}, err
	}
	return parseProcStat(b)
}

// parseProcStat parses /proc/PID/stat. The command name may hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseProcStat(b []byte) (procStatLine, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStatLine{}, errProcStat
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return procStatLine{}, errProcStat
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil || len(f[0]) != 1 {
		return procStatLine{}, errProcStat
	}
	var ticks int64
	for _, s := range f[11:15] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return procStatLine{}, errProcStat
		}
		ticks += v
	}
	return procStatLine{state: f[0][0], ppid: ppid, pgrp: pgrp, cpu: float64(ticks) / clockTicks}, nil
}

// procTree returns pid followed by all its live descendants.
func procTree(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := make(map[int][]int)
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := procStat(p)
		if err != nil {
			continue
		}
		children[st.ppid] = append(children[st.ppid], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}

// groupAlive reports whether any process of group pgid is still running
// (zombies waiting to be reaped do not count).
func groupAlive(pgid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := procStat(p); err == nil && st.pgrp == pgid && st.state != 'Z' {
			return true
		}
	}
	return false
}

// procKiB returns the kB value of the first line starting with key in
// /proc/PID/file, or 0.
func procKiB(pid int, file, key string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, key) {
			continue
		}
		fs := strings.Fields(line[len(key):])
		if len(fs) == 0 {
			return 0
		}
		v, _ := strconv.ParseInt(fs[0], 10, 64)
		return v
	}
	return 0
}

// raiseNoFile raises the soft RLIMIT_NOFILE to the hard limit. Setting it
// explicitly (rather than relying on the Go runtime) also makes the children
// the driver starts inherit the raised limit.
func raiseNoFile() {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return
	}
	r.Cur = r.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
}

// childAttr puts a child in its own process group (so the driver can stop
// it with everything it forked) and kills it if the driver dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
