package udp

// Limits is a Limiter that takes a slot from every one of ls, or from none: main gives each
// relay the UDP-wide session bound and the slots shared with the TCP flows together.
func Limits(ls ...Limiter) Limiter { return limits(ls) }

type limits []Limiter

func (ls limits) Acquire() bool {
	for i, l := range ls {
		if !l.Acquire() {
			for _, got := range ls[:i] {
				got.Release()
			}
			return false
		}
	}
	return true
}

func (ls limits) Release() {
	for _, l := range ls {
		l.Release()
	}
}
