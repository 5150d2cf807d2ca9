package config

import (
	"os"
	"strings"
	"testing"
)

// The README's configuration table names every flag the parser accepts, so a new flag cannot
// ship undocumented.
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	// Parse prints every flag with -h; collect the names from the usage output instead of
	// duplicating the list here.
	var usage strings.Builder
	if _, err := Parse([]string{"-h"}, nil, &usage); err != ErrHelp {
		t.Fatalf("-h: %v", err)
	}
	for _, line := range strings.Split(usage.String(), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "-") {
			names = append(names, strings.Fields(strings.TrimPrefix(line, "-"))[0])
		}
	}
	if len(names) < 20 {
		t.Fatalf("found only %d flags in the usage text", len(names))
	}
	for _, n := range names {
		if !strings.Contains(string(readme), "`--"+n) {
			t.Errorf("README does not document --%s", n)
		}
	}
}
