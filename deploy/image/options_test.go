package image

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestRef(t *testing.T) {
	tests := []struct{ name, version, want string }{
		{"", "v1.2.3", DefaultName + ":v1.2.3"},
		{"", "", DefaultName + ":dev"},
		{"registry.example/x", "v1.2.3-4-gabcdef", "registry.example/x:v1.2.3-4-gabcdef"},
		{"x", "v1.2.3+dirty", "x:v1.2.3-dirty"},
		{"x", "-rc", "x:_rc"},
		{"x", ".hidden", "x:_hidden"},
	}
	for _, tt := range tests {
		if got := Ref(tt.name, tt.version); got != tt.want {
			t.Errorf("Ref(%q, %q) = %q, want %q", tt.name, tt.version, got, tt.want)
		}
	}
}

func TestSourceDateEpoch(t *testing.T) {
	tests := []struct {
		env     string
		want    time.Time
		wantErr bool
	}{
		{"", time.Unix(0, 0), false},
		{"0", time.Unix(0, 0), false},
		{" 1700000000\n", time.Unix(1700000000, 0), false},
		{"-1", time.Time{}, true},
		{"yesterday", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := SourceDateEpoch(func(k string) string {
			if k == "SOURCE_DATE_EPOCH" {
				return tt.env
			}
			return ""
		})
		if (err != nil) != tt.wantErr || !got.Equal(tt.want) {
			t.Errorf("SOURCE_DATE_EPOCH=%q: %v, %v; want %v (error %v)", tt.env, got, err, tt.want, tt.wantErr)
		}
	}
}

// FuzzRef: whatever the version, the tag is a valid OCI/Docker tag.
func FuzzRef(f *testing.F) {
	for _, v := range []string{"v1.2.3", "", "v1.2.3+dirty", "-rc", ".hidden", "ü", strings.Repeat("x", 200)} {
		f.Add(v)
	}
	valid := regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	f.Fuzz(func(t *testing.T, version string) {
		ref := Ref("r", version)
		tag, ok := strings.CutPrefix(ref, "r:")
		if !ok || !valid.MatchString(tag) {
			t.Fatalf("Ref(%q) = %q: invalid tag", version, ref)
		}
	})
}
