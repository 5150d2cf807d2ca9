//go:build !linux

package splice

import "context"

// SpliceEngine exists only on Linux; elsewhere NewSplice returns ErrUnsupported.
type SpliceEngine struct{}

var _ Engine = (*SpliceEngine)(nil)

// NewSplice returns ErrUnsupported: splice(2) is Linux-only.
func NewSplice(Options) (*SpliceEngine, error) { return nil, ErrUnsupported }

func (*SpliceEngine) Relay(Flow) error            { return ErrUnsupported }
func (*SpliceEngine) Active() int                 { return 0 }
func (*SpliceEngine) Drain(context.Context) error { return nil }
func (*SpliceEngine) Close() error                { return nil }
func (*SpliceEngine) Name() string                { return "splice" }
func (*SpliceEngine) Stats() Stats                { return Stats{} }
