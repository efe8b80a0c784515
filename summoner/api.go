package summoner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// Summon returns the addresses of the unikernel name and, if DNS is one of
// its triggers, makes sure it runs: it marks DNS activity and starts a boot
// (or resume, or restore) if none is under way, without waiting for it
// (Jitsu's response delay is the DNS server's: it holds the answer until
// WaitReady's channel closes). With a gate it returns once the gate holds
// the addresses, so that no client's first SYN can beat the
// hold. The returned slice must not be modified.
// A boot it would start goes through admission control (Options.Admit)
// as one from an unknown source.
// Errors: ErrUnknown, ErrBudget, ErrBackoff, ErrAdmission (with the
// addresses), ErrClosed.
func (s *Summoner) Summon(ctx context.Context, name string) ([]netip.Addr, error) {
	return s.SummonBy(ctx, name, TriggerDNS)
}

// SummonBy is Summon for another trigger than DNS (the front door): the
// unikernel boots only if t is one of its triggers.
func (s *Summoner) SummonBy(ctx context.Context, name string, t Trigger) ([]netip.Addr, error) {
	return s.summon(ctx, from(netip.Addr{}), name, t)
}

// summon is Summon for trigger t and admission request ar.
func (s *Summoner) summon(ctx context.Context, ar admitReq, name string, t Trigger) ([]netip.Addr, error) {
	u := s.units.Load().byName[name]
	if u == nil {
		return nil, fmt.Errorf("summon %q: %w", name, ErrUnknown)
	}
	now := s.clock.Now()
	u.activity.Store(now.UnixNano())
	cfg := u.cfg.Load()
	if State(u.state.Load()) == StateReady || !cfg.has(t) {
		return cfg.Addrs, nil
	}
	if err := s.request(u, now, false, t, ar); err != nil {
		if errors.Is(err, ErrAdmission) {
			return cfg.Addrs, err
		}
		return nil, err
	}
	return cfg.Addrs, nil
}

// OnPacket is called by the gate for each packet it holds for addr (the
// first SYN, or datagram, of a client): it is activity for its unikernel,
// and summons it if proto is one of its triggers. It never waits for a
// boot. A boot it starts goes through admission control as one from an
// unknown source (OnPacketFrom knows it).
func (s *Summoner) OnPacket(addr netip.Addr, proto Proto) {
	s.onPacket(from(netip.Addr{}), addr, proto)
}

// onPacket is OnPacket with admission request ar.
func (s *Summoner) onPacket(ar admitReq, addr netip.Addr, proto Proto) {
	u := s.units.Load().byAddr[addr.Unmap()]
	if u == nil {
		return
	}
	now := s.clock.Now()
	u.activity.Store(now.UnixNano())
	if st := u.State(); st == StateReady || st == StateStarting {
		return
	}
	t := TriggerTCP
	if proto == ProtoUDP {
		t = TriggerUDP
	}
	if !u.cfg.Load().has(t) {
		return
	}
	if err := s.request(u, now, false, t, ar); err != nil {
		s.log.Debug("packet could not summon", zap.String("unikernel", u.name), zap.Error(err))
	}
}

// Touch records a TCP SYN seen for addr: OnPacket(addr, ProtoTCP).
func (s *Summoner) Touch(addr netip.Addr) { s.OnPacket(addr, ProtoTCP) }

// Start boots the unikernel name like Summon, for the operator: it ignores
// the failure backoff, the triggers and admission control, and does not
// wait.
func (s *Summoner) Start(ctx context.Context, name string) error {
	u := s.units.Load().byName[name]
	if u == nil {
		return fmt.Errorf("start %q: %w", name, ErrUnknown)
	}
	now := s.clock.Now()
	u.activity.Store(now.UnixNano())
	return s.request(u, now, true, TriggerControl, admitReq{})
}

// WaitReady returns a channel closed when the boot under way of the
// unikernel name settles (ready, or failed), nil if none is under way
// (dnsserver.Waiter: the DNS server holds answers under response_delay
// with it). It never blocks.
func (s *Summoner) WaitReady(name string) <-chan struct{} {
	u := s.units.Load().byName[name]
	if u == nil {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.waitCh == nil {
		return nil
	}
	return u.waitCh
}

// request asks u's actor to boot it, single-flight: only the first request
// of a boot reserves the budget and posts the boot. Every request (but for
// a ready unikernel) returns once the gate holds u's addresses. It applies
// the backoff (unless force) and admission control (per ar).
func (s *Summoner) request(u *unit, now time.Time, force bool, t Trigger, ar admitReq) error {
	if s.unadopted.Load() {
		return fmt.Errorf("summon %q: %w (its domain is not adopted yet)", u.name, hypervisor.ErrUnavailable)
	}
	cfg := u.cfg.Load()
	u.mu.Lock()
	st := u.State()
	if u.removed || st == StateReady {
		u.mu.Unlock()
		return nil
	}
	if u.pending || st == StateStarting {
		u.mu.Unlock()
		s.hold(u, cfg, cfg.bootProtos())
		return nil
	}
	if st == StateFailed && !force {
		if until := u.backoffUntil.Load(); now.UnixNano() < until {
			u.mu.Unlock()
			wait := time.Duration(until - now.UnixNano())
			s.m.refusals.WithLabelValues(u.name).Inc()
			s.log.Info("refusing to retry a failed unikernel during its backoff",
				zap.String("unikernel", u.name), zap.Duration("retry_in", wait))
			return fmt.Errorf("summon %q: %w (retry in %s)", u.name, ErrBackoff, wait.Round(time.Millisecond))
		}
	}
	if err := s.admit(u, ar, now); err != nil {
		u.mu.Unlock()
		return err
	}
	victims, err := s.reserve(u, now)
	if err != nil {
		u.mu.Unlock()
		return err
	}
	u.pending = true
	u.query = now
	u.trigger = t
	if u.waitCh == nil {
		u.waitCh = make(chan struct{})
	}
	u.mu.Unlock()
	s.notifyChanged() // reported starting from now (reportedLocked)
	s.hold(u, cfg, cfg.bootProtos())
	s.evict(u, victims)
	if !s.post(u, event{kind: evSummon, reason: string(t)}) {
		return fmt.Errorf("summon %q: %w", u.name, ErrClosed)
	}
	if t != TriggerGroup {
		s.summonGroup(u, cfg, now, ar)
	}
	return nil
}

// summonGroup summons the unikernels of u's group (Unikernel.With) with
// TriggerGroup, each within the budget and through admission control like
// u; theirs are not followed. A refusal is logged, not returned.
func (s *Summoner) summonGroup(u *unit, cfg *Unikernel, now time.Time, ar admitReq) {
	um := s.units.Load()
	for _, name := range cfg.With {
		m := um.byName[name]
		if m == nil {
			continue
		}
		m.activity.Store(now.UnixNano())
		if err := s.request(m, now, false, TriggerGroup, ar); err != nil {
			s.log.Info("group summon refused", zap.String("unikernel", name), zap.String("with", u.name), zap.Error(err))
		}
	}
}

// evict stops the victims the budget chose to make room for u.
func (s *Summoner) evict(u *unit, victims []*unit) {
	for _, v := range victims {
		mode := v.cfg.Load().StopMode
		if mode == hypervisor.StopSuspend || v.State() == StateSuspended {
			mode = hypervisor.StopDestroy // a paused domain keeps its memory
		}
		s.log.Info("evicting an idle unikernel to make room", zap.String("unikernel", v.name),
			zap.String("for", u.name), zap.String("mode", string(mode)))
		s.post(v, event{kind: evStop, mode: mode, reason: "budget"})
	}
}

// Stop stops the unikernel name with mode (its StopMode when empty), for
// the operator, and waits for the stop to be done. Stopping a unikernel
// that does not run is not an error. Stopping with mode destroy also
// discards a managed save image.
func (s *Summoner) Stop(ctx context.Context, name string, mode hypervisor.StopMode) error {
	u := s.units.Load().byName[name]
	if u == nil {
		return fmt.Errorf("stop %q: %w", name, ErrUnknown)
	}
	if mode != "" {
		if _, err := hypervisor.ParseStopMode(string(mode)); err != nil {
			return fmt.Errorf("stop %q: %w", name, err)
		}
	}
	reply := make(chan error, 1)
	ev := event{kind: evStop, mode: mode, reason: "operator", reply: reply, discard: mode == hypervisor.StopDestroy}
	if !s.post(u, ev) {
		return fmt.Errorf("stop %q: %w", name, ErrClosed)
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("stop %q: %w", name, ctx.Err())
	case <-s.done:
		return fmt.Errorf("stop %q: %w", name, ErrClosed)
	}
}

// Status returns a snapshot of every unikernel, by name.
func (s *Summoner) Status() []Status {
	all := s.units.Load().all
	out := make([]Status, 0, len(all))
	for _, u := range all {
		out = append(out, u.status())
	}
	return out
}

// WaitState blocks until the unikernel name is in state st, with the side
// effects of entering it done (e.g. the gate released for StateReady), or
// ctx is done. Starting and stopping are reported as soon as they begin:
// starting from the moment a boot is requested, stopping from the moment
// a stop begins.
func (s *Summoner) WaitState(ctx context.Context, name string, st State) error {
	for {
		s.changedMu.Lock()
		ch := s.changed
		s.changedMu.Unlock()
		u := s.units.Load().byName[name]
		if u == nil {
			return fmt.Errorf("wait for %q: %w", name, ErrUnknown)
		}
		if u.reported() == st {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for %q to be %s (is %s): %w", name, st, u.reported(), ctx.Err())
		}
	}
}

func (s *Summoner) notifyChanged() {
	s.changedMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.changedMu.Unlock()
}

// Update replaces the configured unikernels (live reload): added ones
// become summonable (and armed), removed ones are stopped (destroyed, their
// save images discarded, their addresses dropped at the gate). A kept one
// whose addresses, MAC, image or resources changed and that is not stopped
// is stopped with its stop mode (its state discarded) and boots on its next
// trigger; other changes take effect at its next boot. A unikernel whose
// domain name changed is removed and added. On error nothing changes.
func (s *Summoner) Update(uks []Unikernel) error {
	cfgs, err := s.normalize(uks)
	if err != nil {
		return fmt.Errorf("update unikernels: %w", err)
	}
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	old := s.units.Load()
	um := &unitMap{}
	keep := map[*unit]bool{}
	var added, restarted []*unit
	for _, c := range cfgs {
		u := old.byName[c.Name]
		if u == nil || u.domain != c.Spec.Name {
			u = s.newUnit(c)
			added = append(added, u)
			um.add(u)
			continue
		}
		keep[u] = true
		if u.cfg.Load().changed(c) || !c.Warm && u.State() == StateWarm {
			restarted = append(restarted, u)
		}
		u.cfg.Store(c)
		um.add(u)
	}
	var removed []*unit
	for _, u := range old.all {
		if !keep[u] {
			removed = append(removed, u)
		}
	}
	// Removed units first lose their domain mapping, then are stopped.
	s.units.Store(um)
	s.sweepAll()
	s.applyUpdate(added, restarted, removed)
	s.log.Info("unikernels reloaded", zap.Int("added", len(added)), zap.Int("kept", len(keep)),
		zap.Int("changed", len(restarted)), zap.Int("removed", len(removed)))
	s.notifyChanged()
	return nil
}

// applyUpdate posts the events of a reload.
func (s *Summoner) applyUpdate(added, restarted, removed []*unit) {
	for _, u := range removed {
		u.mu.Lock()
		u.removed = true
		u.mu.Unlock()
		s.post(u, event{kind: evStop, mode: hypervisor.StopDestroy, reason: "reload", discard: true})
		s.post(u, event{kind: evRearm})
	}
	for _, u := range restarted {
		s.post(u, event{kind: evStop, reason: "reload", discard: true})
		s.post(u, event{kind: evRearm})
	}
	for _, u := range added {
		s.post(u, event{kind: evRearm})
	}
	s.refill()
}
