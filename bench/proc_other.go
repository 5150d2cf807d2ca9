//go:build !linux

package main

import "syscall"

const procSupported = false

func sampleTree(int) (ProcSample, error) { return ProcSample{}, errNoProc }

func raiseNoFile() {}

func groupAlive(int) bool { return false }

func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func procTree(int) ([]int, error) { return nil, errNoProc }
