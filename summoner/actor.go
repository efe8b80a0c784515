package summoner

import (
	"context"

	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// evRearm is not an input of transition: it asks the actor to arm the gate
// for a unikernel at rest (or to drop what is held for a removed one),
// after a reload.
const evRearm evKind = 255

// event is an input of a unikernel's actor.
type event struct {
	kind    evKind
	gen     uint64 // boot generation, for probe results and timeouts; 0: any
	mode    hypervisor.StopMode
	discard bool // evStop: also discard the saved state (managed save image)
	reason  string
	err     error
	reply   chan error // operator Stop: the result

	// reconciliation: the event applies only if no transition happened
	// since the hypervisor was asked (epoch+1 is the unit's epoch then)
	epoch uint64
}

// post queues ev for u's actor, starting the actor if it is not running.
// It reports false once the summoner has stopped. Before Run, events are
// queued and handled once Run starts.
func (s *Summoner) post(u *unit, ev event) bool {
	s.lifeMu.RLock()
	defer s.lifeMu.RUnlock()
	if s.phase == phaseStopped {
		return false
	}
	u.mu.Lock()
	u.queue = append(u.queue, ev)
	spawn := s.phase == phaseRunning && !u.draining
	if spawn {
		u.draining = true
		s.wg.Add(1)
	}
	u.mu.Unlock()
	if spawn {
		go s.drain(u)
	}
	return true
}

// drain is u's actor: it handles u's events one at a time and exits when
// there are none left. At most one drain runs per unit.
func (s *Summoner) drain(u *unit) {
	defer s.wg.Done()
	for {
		u.mu.Lock()
		if len(u.queue) == 0 || s.runCtx.Err() != nil {
			u.queue = nil
			u.draining = false
			u.mu.Unlock()
			s.notifyChanged()
			return
		}
		ev := u.queue[0]
		u.queue = u.queue[1:]
		u.mu.Unlock()
		s.step(u, ev)
	}
}

// actorsIdle reports whether no actor has events to handle.
func (s *Summoner) actorsIdle() bool {
	for _, u := range s.units.Load().all {
		u.mu.Lock()
		busy := u.draining || len(u.queue) > 0
		u.mu.Unlock()
		if busy {
			return false
		}
	}
	return true
}

// step handles one event and the events its actions produce.
func (s *Summoner) step(u *unit, first event) {
	var replyErr error
	queue := []event{first}
	for len(queue) > 0 {
		ev := queue[0]
		queue = queue[1:]
		if ev.kind == evRearm {
			// A failed unikernel is armed again once its backoff is
			// over (doBackoff posts evRearm then): a client's SYN may
			// summon it again, as a query may.
			st := u.State()
			if resting(st) || st == StateFailed && s.clock.Now().UnixNano() >= u.backoffUntil.Load() {
				s.arm(u)
			}
			continue
		}
		if ev.kind == evPrepare {
			u.mu.Lock()
			u.warming = false
			u.mu.Unlock()
		}
		if !s.accept(u, ev) {
			switch ev.kind {
			case evSummon:
				s.summonHandled(u, ev, false)
			case evPrepare:
				s.prepareRefused(u)
			}
			continue
		}
		from := u.State()
		to, acts := transition(from, ev.kind)
		if to != from {
			s.setState(u, from, to, ev)
			s.countStop(u, from, ev)
		}
		if ev.kind == evSummon {
			s.summonHandled(u, ev, to != from)
		}
		for _, a := range acts {
			next, err := actions[a](s, u, ev, from)
			if err != nil && replyErr == nil {
				replyErr = err
			}
			if next != nil {
				queue = append(queue, *next)
				if next.kind == evBootFailed {
					break // the boot failed: no probe
				}
			}
		}
		if to != from {
			s.entered(u, to)
			if to == StateStopped || from == StateWarm {
				s.refill() // after a stop, or a warm slot freed
			}
		}
	}
	u.mu.Lock()
	if u.waitCh != nil && !u.pending && u.State() != StateStarting {
		close(u.waitCh)
		u.waitCh = nil
	}
	u.mu.Unlock()
	if first.reply != nil {
		first.reply <- replyErr
	}
}

// resting reports whether st is a state in which the domain does not run
// and the unikernel waits for a trigger.
func resting(st State) bool {
	return st == StateStopped || st == StateSuspended || st == StateSaved || st == StateWarm
}

// entered finishes a transition once its actions are done: a unikernel at
// rest is armed at the gate, a summon deferred while it could not boot is
// retried, and the new state is shown.
func (s *Summoner) entered(u *unit, to State) {
	if to == StateStarting || to == StateReady {
		u.mu.Lock()
		u.deferred = "" // it runs: the deferred summon is served
		u.mu.Unlock()
	}
	if resting(to) {
		s.arm(u)
		u.mu.Lock()
		t := u.deferred
		u.deferred = ""
		u.mu.Unlock()
		if t != "" {
			if err := s.request(u, s.clock.Now(), false, t, admitReq{}); err != nil { // admitted when asked
				s.log.Info("deferred summon refused", zap.String("unikernel", u.name), zap.Error(err))
			}
		}
	}
	u.shown.Store(int32(to))
	u.epoch.Add(1) // even again: the transition is complete
	s.notifyChanged()
}

// callCtx returns the context of one hypervisor call: under the run's
// context, with a deadline.
func (s *Summoner) callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.runCtx, s.opts.CallTimeout)
}

// accept applies the guards that transition cannot: stale boot
// generations, idle re-check, stale reconciliations, and hypervisor events
// about an earlier incarnation of the domain.
func (s *Summoner) accept(u *unit, ev event) bool {
	if ev.epoch != 0 && u.epoch.Load() != ev.epoch-1 {
		return false
	}
	switch ev.kind {
	case evReady, evBootFailed, evBootTimeout, evSnapshot:
		return ev.gen == 0 || ev.gen == u.gen
	case evStop:
		// a saved unikernel is stopped already; only discarding its save
		// image is left to do
		return u.State() != StateSaved || ev.discard
	case evPrepare:
		u.mu.Lock()
		defer u.mu.Unlock()
		return u.State() == StateStopped && !u.pending && !u.removed && u.cfg.Load().Warm
	case evIdle:
		idle := u.cfg.Load().IdleTimeout
		return idle > 0 && s.clock.Now().UnixNano()-u.activity.Load() >= int64(idle)
	case evCrashed, evDomainStopped:
		if ev.epoch != 0 {
			return true // the reconciler just listed the domains
		}
		if u.State() == StateSaved {
			return false // the save itself
		}
		if u.startCalls.Load() > 0 {
			return false // about the domain before the start under way
		}
		ctx, cancel := s.callCtx()
		defer cancel()
		st, err := s.hv.State(ctx, u.domain)
		if err == nil && (st == hypervisor.StateRunning || st == hypervisor.StatePaused) {
			s.log.Debug("ignoring a stale hypervisor event", zap.String("unikernel", u.name), zap.String("event", ev.reason))
			return false
		}
	}
	return true
}

// summonHandled clears the pending flag and re-derives u's budget claim.
// A summon the state could not act on (a stop under way, an unknown
// state) is deferred until the unikernel is at rest.
func (s *Summoner) summonHandled(u *unit, ev event, booted bool) {
	u.mu.Lock()
	u.pending = false
	if !booted {
		if st := u.State(); st == StateStopping || st == StateUnknown {
			u.deferred = u.trigger
		}
	}
	s.budgetMu.Lock()
	s.setClaimLocked(u, claimFor(u.State(), u.cfg.Load().Memory))
	s.budgetMu.Unlock()
	u.mu.Unlock()
}

// prepareRefused releases the warm slot reserved for an evPrepare the
// unikernel could not take (it was summoned, removed or adopted meanwhile)
// and gives the slot to another.
func (s *Summoner) prepareRefused(u *unit) {
	u.mu.Lock()
	c := claimFor(u.State(), u.cfg.Load().Memory)
	if u.pending {
		c = c.max(claimFor(StateStarting, u.cfg.Load().Memory))
	}
	s.budgetMu.Lock()
	s.setClaimLocked(u, c)
	s.budgetMu.Unlock()
	u.mu.Unlock()
	s.refill()
}

func (s *Summoner) countStop(u *unit, from State, ev event) {
	var reason string
	switch ev.kind {
	case evIdle, evStop:
		reason = ev.reason
	case evCrashed:
		reason = "crash"
	case evBootTimeout:
		reason = "timeout"
	case evDomainStopped:
		reason = "external"
	default:
		return
	}
	s.m.stops.WithLabelValues(u.name, reason).Inc()
}

// setState records a transition: state, status, budget claim, metrics, log.
func (s *Summoner) setState(u *unit, from, to State, ev event) {
	now := s.clock.Now()
	cfg := u.cfg.Load()
	u.mu.Lock()
	dur := now.Sub(u.since)
	u.since = now
	if to == StateStarting {
		u.upSince.Store(now.UnixNano())
	}
	u.state.Store(int32(to))
	u.epoch.Add(1) // odd while the transition's actions run
	c := claimFor(to, cfg.Memory)
	if u.pending {
		c = c.max(claimFor(StateStarting, cfg.Memory))
	}
	s.budgetMu.Lock()
	s.setClaimLocked(u, c)
	u.evicting = false
	s.budgetMu.Unlock()
	u.mu.Unlock()
	if to == StateStopping || to == StateStarting {
		// Shown at once: the stop is the transition's only action and may
		// take the hypervisor's shutdown_timeout; a boot's create call
		// (beside the actor) may take seconds under load. Neither shows
		// the state it leaves while it runs.
		u.shown.Store(int32(to))
		s.notifyChanged()
	}

	s.m.state.WithLabelValues(u.name, from.String()).Set(0)
	s.m.state.WithLabelValues(u.name, to.String()).Set(1)
	reason := ev.reason
	if reason == "" {
		reason = ev.kind.String()
	}
	fields := []zap.Field{zap.String("unikernel", u.name), zap.Stringer("from", from), zap.Stringer("to", to),
		zap.String("reason", reason), zap.Duration("duration", dur)}
	if ev.err != nil {
		fields = append(fields, zap.Error(ev.err))
	}
	s.log.Info("unikernel transition", fields...)
}
