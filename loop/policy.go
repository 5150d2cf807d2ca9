package loop

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nat464/nat464-sidecar/policy"
)

// Refusals by the egress policy (policy.Engine, asked by the Dialer) are answered like any
// "not allowed" (SOCKS5 02, SOCKS4 91, HTTP 403 whose body names the rule: reply.go), counted
// as RejectPolicy (or RejectSelf) and in the policy's own per-rule metric, and logged at INFO
// with the client protocol, the destination and the rule, at most policyLogRate lines a
// second: a client looping over denied destinations must not flood the log.

// policyLogRate is how many refusal lines are written per second at most; the lines skipped
// are counted in the next line written (suppressed).
const policyLogRate = 10

// logBudget lets policyLogRate calls through per wall-clock second and counts the others.
type logBudget struct {
	mu      sync.Mutex
	second  int64
	used    int
	skipped int
}

// take reports whether a line may be written now and how many were skipped before it.
func (b *logBudget) take(now time.Time) (ok bool, skipped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := now.Unix(); s != b.second {
		b.second, b.used = s, 0
	}
	if b.used >= policyLogRate {
		b.skipped++
		return false, 0
	}
	b.used++
	skipped, b.skipped = b.skipped, 0
	return true, skipped
}

var policyLog logBudget

// denied reports whether err is the egress policy's refusal by a rule other than the self
// rule (which keeps its own WARN line).
func denied(err error) (*policy.DeniedError, bool) {
	var de *policy.DeniedError
	if errors.As(err, &de) && !errors.Is(err, ErrSelf) {
		return de, true
	}
	return nil, false
}

// logDenied writes the policy's refusal of a request for dest from protocol, within
// policyLog's budget.
func logDenied(lg *slog.Logger, protocol, dest string, de *policy.DeniedError) {
	ok, skipped := policyLog.take(time.Now())
	if !ok {
		return
	}
	attrs := []any{"protocol", protocol, "dest", dest, "rule", de.Rule}
	if de.Line > 0 {
		attrs = append(attrs, "line", de.Line)
	}
	if de.Dest != dest {
		attrs = append(attrs, "denied", de.Dest)
	}
	if de.Stands.IsValid() {
		attrs = append(attrs, "nat64_for", de.Stands.String())
	}
	if skipped > 0 {
		attrs = append(attrs, "suppressed", skipped)
	}
	lg.Log(context.Background(), slog.LevelInfo, "egress policy denied", attrs...)
}

// httpDetail is the line an HTTP refusal's body adds: the policy's refusal names its rule.
func httpDetail(err error) string {
	var de *policy.DeniedError
	if errors.As(err, &de) {
		return de.Error()
	}
	return ""
}

// LogDenied logs err at INFO, within the same budget as the proxy's refusals, when it is the
// egress policy's refusal of a request for dest from protocol, and reports whether it was. It
// is for outbound paths outside this package that dial through the same eyeballs.Dialer (egress
// UDP: the policy refused the name, or every address it has).
func LogDenied(lg *slog.Logger, protocol, dest string, err error) bool {
	de, ok := denied(err)
	if ok {
		logDenied(lg, protocol, dest, de)
	}
	return ok
}
