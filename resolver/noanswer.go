package resolver

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// NoAnswerError is a question no nameserver answered: every try timed out, or the lookup's
// deadline came before any reply. It wraps ErrTimeout, and context.DeadlineExceeded when the
// deadline ended the wait, so that its message, not a bare "timeout", reaches the log.
type NoAnswerError struct {
	// Name is the name asked, absolute.
	Name string
	// Types are the query types asked ("AAAA", "A"); Join merges the families of one name.
	Types []string
	// Servers are the nameservers asked, each with its transport: "192.0.2.53:53 (udp)".
	Servers []string
	// Tries is how many tries timed out, each after PerTry. Zero when the lookup's deadline
	// ended the wait first; Waited then says after how long.
	Tries  int
	PerTry time.Duration
	Waited time.Duration
}

func (e *NoAnswerError) Error() string {
	s := fmt.Sprintf("resolver: no answer from %s for %s %s", strings.Join(e.Servers, ", "), e.Name,
		strings.Join(e.Types, "/"))
	if e.Tries == 0 {
		return s + fmt.Sprintf(" within %v (the lookup's deadline)", e.Waited)
	}
	tries := "tries"
	if e.Tries == 1 {
		tries = "try"
	}
	return s + fmt.Sprintf(" within %v (%d %s of %v)", time.Duration(e.Tries)*e.PerTry, e.Tries, tries, e.PerTry)
}

// Unwrap reports ErrTimeout, and context.DeadlineExceeded when the lookup's deadline ended it.
func (e *NoAnswerError) Unwrap() []error {
	if e.Tries == 0 {
		return []error{ErrTimeout, context.DeadlineExceeded}
	}
	return []error{ErrTimeout}
}

// Timeout is true: a NoAnswerError is a net.Error timeout.
func (e *NoAnswerError) Timeout() bool { return true }

// Temporary is true, as for every timeout.
func (e *NoAnswerError) Temporary() bool { return true }

// sameBut reports whether e and o differ in their query types only.
func (e *NoAnswerError) sameBut(o *NoAnswerError) bool {
	return e.Name == o.Name && slices.Equal(e.Servers, o.Servers) && e.Tries == o.Tries && e.PerTry == o.PerTry
}

// tryTimeout is one try that got no reply within its timeout.
type tryTimeout struct {
	srv     netip.AddrPort
	network string
}

func (e *tryTimeout) Error() string {
	return fmt.Sprintf("%v: no reply from %s over %s", ErrTimeout, e.srv, e.network)
}

func (e *tryTimeout) Unwrap() error { return ErrTimeout }

func (e *tryTimeout) server() string { return fmt.Sprintf("%s (%s)", e.srv, e.network) }

// deadlineErr is what a lookup whose deadline passed while it waited for name+qtype returns:
// which servers it was waiting for, and for how long.
func deadlineErr(rc *ResolvConf, name string, qtype uint16, waited time.Duration) error {
	servers := rc.Servers
	if len(servers) == 0 {
		servers = localServers()
	}
	network := "udp"
	if rc.UseTCP {
		network = "tcp"
	}
	e := &NoAnswerError{Name: name, Types: []string{dns.TypeToString[qtype]}, Waited: waited.Round(time.Millisecond)}
	for _, s := range servers {
		e.Servers = append(e.Servers, (&tryTimeout{srv: s, network: network}).server())
	}
	return e
}

// Join combines the errors of a lookup's families into one, keeping their order: nil errors
// are dropped, and NoAnswerErrors that differ only in their query type become one naming every
// type ("no answer ... for example.com. AAAA/A"). errors.Is and errors.As see every part.
func Join(errs ...error) error {
	var out []error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if merged := mergeNoAnswer(out, err); merged {
			continue
		}
		out = append(out, err)
	}
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	return joined(out)
}

// mergeNoAnswer folds err into a NoAnswerError of out for the same question, if it is one.
// The element of out it changes is a copy Join made, never the caller's.
func mergeNoAnswer(out []error, err error) bool {
	na, ok := err.(*NoAnswerError)
	if !ok {
		return false
	}
	for i, o := range out {
		prev, ok := o.(*NoAnswerError)
		if !ok || !prev.sameBut(na) {
			continue
		}
		c := *prev
		c.Types = append(slices.Clip(c.Types), na.Types...)
		c.Waited = max(c.Waited, na.Waited)
		out[i] = &c
		return true
	}
	return false
}

// joined is several errors reported on one line.
type joined []error

func (j joined) Error() string {
	parts := make([]string, len(j))
	for i, err := range j {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (j joined) Unwrap() []error { return j }
