//go:build !linux

package loop

import (
	"errors"

	"github.com/nat464/nat464-sidecar/splice"
)

func newGnet(Config, *splice.SpliceEngine) (Frontend, error) {
	return nil, errors.New("loop: the gnet front end pairs with the splice engine, which is Linux-only")
}
