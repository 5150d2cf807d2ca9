package loop

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/nat464/nat464-sidecar/socks"
	"github.com/nat464/nat464-sidecar/splice"
)

// Kinds of connection, the values of the "kind" metric label.
const (
	kindInbound  = "inbound"
	kindOutbound = "outbound"
)

// owner is one connection from accept to its end, whichever front end accepted it and whichever
// engine relays it. It holds the connection's flow slot and labels, and it alone counts the
// connection in the metrics, logs it and settles its outcome:
//
//	admit ──> [handshake ──> request] ──> Connected(err) ──> relayed ──> Ended
//	  │              │                         │
//	  └─ refused     └─ refused / cut          └─ failed ──────────────> Ended
//
// A front end makes one with admit (nil: refused and counted), hands it to the engine as the
// flow's splice.Owner, or calls end itself when the connection never reached an engine. The
// first end releases the slot; a second is a bug, counted in doubleEnds and logged, never a
// second release. Connected runs once per connection: from the engine for a connect it
// finishes, from the front end for one it made itself.
type owner struct {
	cfg    *Config
	kind   string
	target string   // the app (inbound) or the request's destination, once known
	req    *request // proxy requests, once complete

	// attempt, if set, is the dialer's accounting of a connect the front end made itself
	// (eyeballs.Dialer.Direct); Connected reports the outcome to it.
	attempt func(error)

	// settled is set once a handshake's refusal or cut is counted: the gnet front end's
	// timeout sweep may cut a handshake from another goroutine.
	settled  atomic.Bool
	answered bool // Connected ran
	started  bool // counted in flows_total and flows_active
	ended    atomic.Bool
}

// doubleEnds counts owners ended twice; tests require it to stay 0.
var doubleEnds atomic.Int64

// admit takes a flow slot for a connection just accepted, or refuses it: draining, or every
// slot taken. A refusal is counted and the caller closes the connection.
func admit(cfg *Config, kind string, draining bool) *owner {
	if draining {
		cfg.Metrics.reject(RejectDraining)
		return nil
	}
	if !cfg.Limit.Acquire() {
		cfg.Metrics.reject(RejectMaxConns)
		warnFull(cfg.log(), cfg.Limit)
		return nil
	}
	return &owner{cfg: cfg, kind: kind}
}

// request records the complete proxy request the connection carries.
func (o *owner) request(r *request) {
	o.req = r
	o.target = r.String()
}

// refused counts a handshake the session turned down (its reply is already queued).
func (o *owner) refused(proto, reason, reply string, err error) {
	if o.settled.Swap(true) {
		return
	}
	o.cfg.Metrics.reject(reason)
	o.cfg.Metrics.handshake(proto, reply)
	o.cfg.log().Debug("proxy handshake refused", "protocol", proto, "reason", reason, "err", err)
}

// cut counts a handshake the front end ended: its deadline passed, or it grew too large.
// Safe from any goroutine.
func (o *owner) cut(reason string) {
	if o.settled.Swap(true) {
		return
	}
	o.cfg.Metrics.reject(reason)
	o.cfg.log().Debug("proxy handshake cut", "reason", reason)
}

// Connected settles the upstream connect: on success the flow counts as started; a failure is
// counted and logged by kind, and a proxy client gets the failure reply in its protocol (an
// inbound or egress client gets none, so the engine resets it, as a closed port would).
func (o *owner) Connected(err error) []byte {
	o.answered = true
	if o.attempt != nil {
		o.attempt(err)
		o.attempt = nil
	}
	if o.req != nil {
		o.dialed(err)
	} else if err != nil && o.kind == kindEgress {
		o.cfg.Metrics.connectFailed(o.kind)
		o.egressFailed(err)
	} else if err != nil {
		o.cfg.Metrics.connectFailed(o.kind)
		if connectWarnings.allow() {
			o.cfg.log().Warn("connect to app failed", "target", o.target, "err", fdErr(err))
		}
	}
	if err != nil {
		if o.req != nil {
			return o.req.failureReply(err)
		}
		return nil
	}
	o.started = true
	// The request is answered: an idle flow need not keep it (its target string stays for the
	// log). That is about a sixth of an idle proxied flow's live heap (bench/results/ANALYSIS.md).
	o.req = nil
	o.cfg.Metrics.flowStarted(o.kind, o.cfg.Engine.Name())
	return nil
}

// dialed counts a proxy request's dial under the reply it earns, and logs a failure at the
// level dialLevel gives it.
func (o *owner) dialed(err error) {
	req := o.req
	o.cfg.Metrics.handshake(req.proto.String(), replyName(req.proto, err))
	if err == nil {
		return
	}
	msg := "proxy dial failed"
	if de, ok := denied(err); ok {
		o.cfg.Metrics.reject(RejectPolicy)
		logDenied(o.cfg.log(), req.proto.String(), req.String(), de)
		return
	}
	switch {
	case errors.Is(err, ErrSelf):
		o.cfg.Metrics.reject(RejectSelf)
		msg = "proxy request refused: the destination is the sidecar itself"
	case ReplyFor(err) == socks.ReplyNotAllowed:
		o.cfg.Metrics.reject(RejectPolicy)
	}
	o.cfg.log().Log(context.Background(), dialLevel(err), msg, "protocol", req.proto.String(), "dest", req.String(),
		"err", fdErr(err))
}

// ReplyClientGone is the handshakes_total reply of a proxy request whose client reset before
// its connect finished: the connect is given up and no reply is sent, on both engines.
const ReplyClientGone = "client gone"

// abandoned settles a complete request whose client left before Connected: the handshake is
// counted under ReplyClientGone and a connect the front end made itself is reported cancelled.
func (o *owner) abandoned() {
	if o.attempt != nil {
		o.attempt(context.Canceled)
		o.attempt = nil
	}
	o.cfg.Metrics.handshake(o.req.proto.String(), ReplyClientGone)
	o.cfg.log().Debug("proxy client left before its reply", "protocol", o.req.proto.String(), "dest", o.req.String())
}

// Ended is the engine's report that the flow is over.
func (o *owner) Ended(r splice.Result) { o.end(r) }

// close ends a connection that never reached an engine (refused, cut, or its dial failed).
func (o *owner) close() { o.end(splice.Result{}) }

// end releases the slot and, for a flow that started, counts its bytes and lifetime.
func (o *owner) end(r splice.Result) {
	if o.ended.Swap(true) {
		doubleEnds.Add(1)
		o.cfg.log().Error("loop: connection ended twice (bug)", "kind", o.kind, "target", o.target)
		return
	}
	if o.req != nil && !o.answered && !o.settled.Load() {
		o.abandoned()
	}
	o.cfg.Limit.Release()
	if !o.started {
		return
	}
	o.cfg.Metrics.flowEnded(o.kind, o.cfg.Engine.Name(), r)
	if lg := o.cfg.log(); lg.Enabled(context.Background(), slog.LevelDebug) {
		lg.Debug("flow ended", "kind", o.kind, "target", o.target, "up_bytes", r.Up, "down_bytes", r.Down,
			"duration", r.End.Sub(r.Start).String(), "err", r.Err)
	}
}

var _ splice.Owner = (*owner)(nil)
