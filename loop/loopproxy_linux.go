//go:build linux

package loop

import (
	"errors"
	"fmt"

	"github.com/nat464/nat464-sidecar/splice"
)

// serveProxyOnLoops serves the proxy port on the splice engine's relay loops
// (Config.ProxyOnLoops): each loop accepts on its own SO_REUSEPORT socket and runs the
// handshake (the same session as on gnet), the connect or the race, and the relay, so a proxied
// connection never changes thread.
func (f *gnetFrontend) serveProxyOnLoops() error {
	if len(f.proxies) == 0 || !f.cfg.ProxyOnLoops {
		return nil
	}
	if _, ok := f.cfg.dialer().(DirectDialer); !ok || f.cfg.Race == nil {
		f.eng.StopInbound()
		return errors.New("loop: the proxy on the relay loops needs a DirectDialer and Race")
	}
	for _, ap := range f.proxies { // probed by Start
		addr, err := f.eng.ServeInbound(splice.Inbound{
			Listen: ap, ConnectTimeout: f.cfg.dialTimeout(), Front: loopProxy{f, ap.String()},
			Handshake: true, HandshakeTimeout: f.cfg.handshakeTimeout(), MaxHandshakeBytes: f.cfg.maxHandshakeBytes(),
		})
		if err != nil {
			f.eng.StopInbound()
			return fmt.Errorf("loop: cannot listen on %s: %w", ap, err)
		}
		f.bound = append(f.bound, addr)
	}
	return nil
}

// loopProxy admits one proxy address's connections on the relay loops (splice.Admitter).
type loopProxy struct {
	f      *gnetFrontend
	listen string
}

func (p loopProxy) Admit() splice.Owner {
	o := admit(&p.f.cfg, kindOutbound, p.f.shutdown.Load())
	if o == nil {
		return nil
	}
	return &loopHandshake{owner: o, f: p.f, s: newSession(&p.f.cfg, o)}
}

func (p loopProxy) AcceptFailed(err error) {
	logAcceptError(p.f.cfg.log(), p.listen, err)
}

// loopHandshake is a proxy connection's owner while the relay loop runs its handshake
// (splice.Handshaker): the session parses, and a complete request becomes the upstream the
// loop connects (a literal, planned by Direct as on gnet) or races (a name).
type loopHandshake struct {
	*owner
	f *gnetFrontend
	s *session
}

func (h *loopHandshake) Feed(b []byte) (int, []byte, *splice.Upstream, error) {
	n, out, req, err := h.s.feed(b)
	if err != nil || req == nil {
		return n, out, nil, err
	}
	o := h.owner
	if req.forward { // plain HTTP: the socket leaves the loop for the forwarder's goroutine
		f := h.f
		f.dials.wg.Add(1)
		return n, out, &splice.Upstream{Handoff: func(fd int, buf []byte) {
			defer f.dials.wg.Done()
			f.fwd.serveFD(fd, buf, o)
		}}, nil
	}
	if req.associate { // SOCKS5 UDP ASSOCIATE: the control connection leaves the loop too
		f := h.f
		f.dials.wg.Add(1)
		return n, out, &splice.Upstream{Handoff: func(fd int, buf []byte) {
			defer f.dials.wg.Done()
			f.assoc.serveFD(fd, buf, o, req)
		}}, nil
	}
	o.request(req)
	up := &splice.Upstream{ToClient: req.successReply()}
	if !req.dest.IsName() {
		target, done, ok, derr := h.f.cfg.dialer().(DirectDialer).Direct(req.host(), req.dest.Port)
		if ok {
			o.attempt = done
			if derr != nil { // refused by policy: the failure reply, then a FIN
				return n, append(out, o.Connected(derr)...), nil, errClose
			}
			up.Target = target
			return n, out, up, nil
		}
	}
	up.Racer = h.f.cfg.Race(req.host(), req.dest.Port)
	return n, out, up, nil
}

// Cut counts a handshake the loop ended, as the gnet front end's sweep and size check do.
func (h *loopHandshake) Cut(err error) {
	if errors.Is(err, splice.ErrHandshakeTooLarge) {
		h.s.fail(RejectHandshakeBytes)
		return
	}
	h.s.fail(RejectHandshakeTimeout)
}

var _ splice.Handshaker = (*loopHandshake)(nil)
