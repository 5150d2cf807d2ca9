//go:build !linux

package loop

import "errors"

func newGnet(Config) (Frontend, error) {
	return nil, errors.New("loop: the gnet front end pairs with the splice engine, which is Linux-only")
}
