package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeAuthFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadAuthFile(t *testing.T) {
	long := strings.Repeat("x", 255)
	p := writeAuthFile(t, "# users\n\nalice:s3cret\r\nbob:pa:ss word \n   \n"+long+":"+long+"\n#carol:nope")
	c, err := LoadAuthFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 3 {
		t.Errorf("Len = %d, want 3", c.Len())
	}
	tests := []struct {
		user, pass string
		want       bool
	}{
		{"alice", "s3cret", true},
		{"alice", "s3cret\r", false},
		{"alice", "S3cret", false},
		{"alice", "", false},
		{"bob", "pa:ss word ", true},
		{"bob", "pa:ss word", false},
		{long, long, true},
		{"carol", "nope", false},
		{"#carol", "nope", false},
		{"", "", false},
		{"mallory", "s3cret", false},
	}
	for _, tt := range tests {
		if got := c.Check(tt.user, tt.pass); got != tt.want {
			t.Errorf("Check(%.10q, %.10q) = %v, want %v", tt.user, tt.pass, got, tt.want)
		}
	}
	var nilCreds *Credentials
	if nilCreds.Check("alice", "s3cret") || nilCreds.Len() != 0 {
		t.Error("nil Credentials must accept nobody")
	}
}

func TestLoadAuthFileErrors(t *testing.T) {
	long := strings.Repeat("y", 256)
	tests := []struct {
		name, content, wantIn string
	}{
		{"no colon", "alice:pw\nbobhunter2\n", "line 2: want user:password"},
		{"empty user", ":hunter2\n", "line 1: user must be"},
		{"empty password", "alice:\n", "line 1: password must be"},
		{"long user", long + ":hunter2\n", "line 1: user must be"},
		{"long password", "alice:" + long + "\n", "line 1: password must be"},
		{"duplicate", "# x\nalice:a\nalice:hunter2\n", "line 3: user given twice"},
		{"no users", "# only comments\n\n", "no user:password lines"},
		{"empty file", "", "no user:password lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeAuthFile(t, tt.content)
			_, err := LoadAuthFile(p)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "config: "+p) || !strings.Contains(msg, tt.wantIn) {
				t.Errorf("error %q, want prefix %q and %q", msg, "config: "+p, tt.wantIn)
			}
			if strings.Contains(msg, "hunter2") || strings.Contains(msg, long) {
				t.Errorf("error %q echoes a secret", msg)
			}
		})
	}
}

func TestLoadAuthFileMissing(t *testing.T) {
	_, err := LoadAuthFile(filepath.Join(t.TempDir(), "absent"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
}
