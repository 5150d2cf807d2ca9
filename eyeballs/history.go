package eyeballs

import (
	"net/netip"
	"strings"
	"time"
)

// historyEntry is what the last won race to a host taught (RFC 8305 §4): the winning address in
// its sorting form and the handshake RTT.
type historyEntry struct {
	addr netip.Addr
	rtt  time.Duration
	at   time.Time // first recorded; wins the entry itself caused do not extend it
}

func historyKey(host string) string {
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// winner returns the remembered winner for host, if fresh at now.
func (d *Dialer) winner(host string, now time.Time) (netip.Addr, bool) {
	if d.historySize() == 0 {
		return netip.Addr{}, false
	}
	d.histMu.Lock()
	defer d.histMu.Unlock()
	e, ok := d.hist[historyKey(host)]
	if !ok || now.Sub(e.at) >= d.historyTTL() {
		return netip.Addr{}, false
	}
	return e.addr, true
}

// remember records the winner of a race to host, won at now.
func (d *Dialer) remember(host string, addr netip.Addr, rtt time.Duration, now time.Time) {
	size := d.historySize()
	if size == 0 {
		return
	}
	key := historyKey(host)
	d.histMu.Lock()
	defer d.histMu.Unlock()
	if d.hist == nil {
		d.hist = make(map[string]historyEntry)
	}
	if e, ok := d.hist[key]; ok && e.addr == addr && now.Sub(e.at) < d.historyTTL() {
		e.rtt = rtt
		d.hist[key] = e
		return
	}
	if _, ok := d.hist[key]; !ok && len(d.hist) >= size {
		d.evictLocked(now)
	}
	d.hist[key] = historyEntry{addr: addr, rtt: rtt, at: now}
}

// evictLocked drops expired entries, or the oldest one when none has expired.
func (d *Dialer) evictLocked(now time.Time) {
	var oldest string
	for k, e := range d.hist {
		if now.Sub(e.at) >= d.historyTTL() {
			delete(d.hist, k)
			continue
		}
		if oldest == "" || e.at.Before(d.hist[oldest].at) {
			oldest = k
		}
	}
	if len(d.hist) >= d.historySize() && oldest != "" {
		delete(d.hist, oldest)
	}
}
