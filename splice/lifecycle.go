package splice

import "sync"

// lifecycle is the admission and settling bookkeeping both engines share. A flow is admitted
// only while the engine runs; zero is closed once the engine admits no more and every admitted
// flow has ended and its Done has returned, which is what Drain and Close wait for.
type lifecycle struct {
	mu       sync.Mutex
	state    int
	active   int           // admitted flows not yet ended
	settling int           // ended flows whose Done is running
	zero     chan struct{} // see above; made by the engine's constructor
	zeroed   bool
}

// Active reports how many flows are being relayed.
func (lc *lifecycle) Active() int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.active
}

// stopAccepting moves the engine out of stateRunning (to to) and arms the zero channel.
func (lc *lifecycle) stopAccepting(to int) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.state = max(lc.state, to)
	lc.checkZero()
}

// checkZero closes zero when the engine no longer admits and has no flows. mu must be held.
func (lc *lifecycle) checkZero() {
	if lc.state != stateRunning && lc.active == 0 && lc.settling == 0 && !lc.zeroed {
		lc.zeroed = true
		close(lc.zero)
	}
}

// flowEnding drops a flow from Active before its Done runs; flowSettled follows once Done
// returned, so that Drain and Close return only after every Done.
func (lc *lifecycle) flowEnding() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.active--
	lc.settling++
}

func (lc *lifecycle) flowSettled() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.settling--
	lc.checkZero()
}
