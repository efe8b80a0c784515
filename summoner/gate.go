package summoner

import (
	"net"
	"net/netip"
	"slices"

	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// holding is what the gate holds for a unit: the addresses it was given
// (released or dropped as they were, even after a reload changed them)
// and the protocols.
type holding struct {
	addrs  []netip.Addr
	protos []Proto
}

// mac returns the MAC of the unikernel's NIC.
func mac(cfg *Unikernel) net.HardwareAddr {
	if cfg.Spec.MAC != nil {
		return cfg.Spec.MAC
	}
	return hypervisor.DeriveMAC(cfg.Spec.Name)
}

// hold makes the gate hold cfg's addresses for protos (and what it already
// holds for them). It is idempotent: it calls the gate only when something
// new is to be held, and returns once the hold is in place, also for
// concurrent callers. Addresses held for an earlier config are dropped.
func (s *Summoner) hold(u *unit, cfg *Unikernel, protos []Proto) {
	if s.gate == nil {
		return
	}
	u.holdMu.Lock()
	defer u.holdMu.Unlock()
	if h := u.held; h != nil {
		if !slices.Equal(h.addrs, cfg.Addrs) {
			s.gateDrop(u, h.addrs)
			u.held = nil
		} else if subset(protos, h.protos) {
			return
		} else {
			protos = union(protos, h.protos)
		}
	}
	if err := s.gate.Hold(cfg.Addrs, mac(cfg), protos); err != nil {
		s.m.gateErrors.WithLabelValues("hold").Inc()
		s.log.Warn("gate hold failed", zap.String("unikernel", u.name), zap.Error(err))
	}
	u.held = &holding{addrs: cfg.Addrs, protos: protos}
}

// arm holds u's addresses while it is stopped, if its triggers include
// tcp or udp; otherwise it makes sure nothing is held for it.
func (s *Summoner) arm(u *unit) {
	cfg := u.cfg.Load()
	u.mu.Lock()
	removed := u.removed
	u.mu.Unlock()
	if p := cfg.armProtos(); len(p) > 0 && !removed {
		s.hold(u, cfg, p)
		return
	}
	s.unhold(u, false)
}

// unhold stops holding what is held for u: release replays it (the guest
// is ready), otherwise the gate drops it. It returns how many packets were
// replayed.
func (s *Summoner) unhold(u *unit, release bool) int {
	if s.gate == nil {
		return 0
	}
	u.holdMu.Lock()
	defer u.holdMu.Unlock()
	h := u.held
	if h == nil {
		return 0
	}
	u.held = nil
	if !release {
		s.gateDrop(u, h.addrs)
		return 0
	}
	n, err := s.gate.Release(h.addrs)
	if err != nil {
		s.m.gateErrors.WithLabelValues("release").Inc()
		s.log.Warn("gate release failed", zap.String("unikernel", u.name), zap.Error(err))
	}
	return n
}

func (s *Summoner) gateDrop(u *unit, addrs []netip.Addr) {
	if err := s.gate.Drop(addrs); err != nil {
		s.m.gateErrors.WithLabelValues("drop").Inc()
		s.log.Warn("gate drop failed", zap.String("unikernel", u.name), zap.Error(err))
	}
}

// armStopped arms, at Run, the stopped unikernels that nothing else is
// about to change.
func (s *Summoner) armStopped() {
	for _, u := range s.units.Load().all {
		u.mu.Lock()
		idle := u.State() == StateStopped && !u.pending && len(u.queue) == 0
		u.mu.Unlock()
		if idle {
			s.arm(u)
		}
	}
}

func subset(a, b []Proto) bool {
	for _, p := range a {
		if !slices.Contains(b, p) {
			return false
		}
	}
	return true
}

func union(a, b []Proto) []Proto {
	out := slices.Clone(b)
	for _, p := range a {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}
