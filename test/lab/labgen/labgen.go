// Package labgen is the deterministic byte stream the lab servers send for bulk transfers, so a
// client can check a transfer of any length against a SHA-256 it computes itself. It is test
// support for test/lab and test/e2e only; the sidecar never imports it.
package labgen

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
)

// seed fixes the stream: the same n always yields the same bytes, on every machine.
var seed = [32]byte{'n', 'a', 't', '4', '6', '4', '-', 'l', 'a', 'b'}

// Reader returns a reader of exactly n bytes of the lab stream.
func Reader(n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8(seed), n)
}

// Sum returns the hex SHA-256 of the first n bytes of the lab stream.
func Sum(n int64) string {
	h := sha256.New()
	if _, err := io.Copy(h, Reader(n)); err != nil {
		panic(fmt.Sprintf("labgen: hashing the stream cannot fail: %v", err))
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
