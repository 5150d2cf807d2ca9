//go:build linux

package loop

import (
	"fmt"
	"log/slog"
)

// gnetLogger sends gnet's own log lines to the sidecar's logger (gnet would print to stderr in
// its own format otherwise).
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Errorf(f string, a ...any) {
	for _, v := range a {
		if err, ok := v.(error); ok && fdErr(err) != err {
			// gnet's "Accept() failed" with EMFILE: say what it means and what to do.
			g.l.Error(fmt.Sprintf(f, a...), "component", "gnet", "err", fdErr(err))
			return
		}
	}
	g.l.Error(fmt.Sprintf(f, a...), "component", "gnet")
}
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
