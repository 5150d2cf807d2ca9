package labgen

import (
	"bytes"
	"io"
	"testing"
)

func TestStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int64
	}{{"empty", 0}, {"one", 1}, {"odd", 12345}, {"mib", 1 << 20}} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := io.ReadAll(Reader(tc.n))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(Reader(tc.n))
			if int64(len(a)) != tc.n || !bytes.Equal(a, b) {
				t.Fatalf("stream of %d bytes: got %d bytes, deterministic=%v", tc.n, len(a), bytes.Equal(a, b))
			}
			if Sum(tc.n) != Sum(tc.n) || (tc.n > 0 && Sum(tc.n) == Sum(tc.n-1)) {
				t.Fatalf("Sum(%d) not stable or not length-sensitive", tc.n)
			}
		})
	}
}
