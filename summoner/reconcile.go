package summoner

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// adopt lists the hypervisor's domains before Run starts the actors: those
// of configured unikernels are adopted, the others destroyed (and their
// save images discarded).
func (s *Summoner) adopt(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	doms, err := s.hv.List(lctx)
	cancel()
	if err != nil {
		return fmt.Errorf("adopt running domains: %w", err)
	}
	um := s.units.Load()
	now := s.clock.Now()
	for _, d := range doms {
		u := um.byDomain[d.Name]
		if u == nil {
			s.stranger(ctx, d)
			continue
		}
		k, ok := reconcileEvent(StateStopped, d.State, true, u.cfg.Load().Warm)
		if !ok {
			continue
		}
		u.activity.Store(now.UnixNano())
		u.mu.Lock()
		u.queue = append([]event{{kind: k, reason: "adopt"}}, u.queue...)
		u.mu.Unlock()
	}
	return nil
}

// stranger handles a domain of jitsu's that no configured unikernel owns:
// a running one is destroyed, a saved one's image discarded.
func (s *Summoner) stranger(ctx context.Context, d hypervisor.Domain) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	switch d.State {
	case hypervisor.StateRunning, hypervisor.StatePaused:
		s.log.Info("destroying domain of an unconfigured unikernel", zap.String("domain", d.Name), zap.Stringer("state", d.State))
		if err := s.hv.Stop(ctx, d.Name, hypervisor.StopDestroy); err != nil {
			s.log.Warn("destroy unconfigured domain", zap.String("domain", d.Name), zap.Error(err))
		}
	case hypervisor.StateSaved:
		s.log.Info("discarding the save image of an unconfigured unikernel", zap.String("domain", d.Name))
		if err := s.hv.DiscardSave(ctx, d.Name); err != nil {
			s.log.Warn("discard save image of unconfigured domain", zap.String("domain", d.Name), zap.Error(err))
		}
	}
}

// reconcileEvent returns the event that brings a unikernel the summoner
// believes in state st in line with its domain, in state dom (found: the
// hypervisor has it), and false when they agree or the unikernel is busy
// (starting or stopping: its own actions settle it). The paused domain of
// a warm unikernel is taken as its warm domain. It is pure.
func reconcileEvent(st State, dom hypervisor.State, found, warm bool) (evKind, bool) {
	if st == StateStarting || st == StateStopping {
		return 0, false
	}
	if !found {
		dom = hypervisor.StateShutoff
	}
	switch dom {
	case hypervisor.StateRunning:
		switch st {
		case StateStopped, StateFailed, StateSaved, StateSuspended, StateUnknown, StateWarm:
			return evAdoptRunning, true
		}
	case hypervisor.StatePaused:
		switch st {
		case StateStopped, StateFailed, StateSaved, StateUnknown:
			if warm {
				return evAdoptWarm, true
			}
			return evAdoptPaused, true
		}
	case hypervisor.StateSaved:
		switch st {
		case StateStopped, StateUnknown:
			return evAdoptSaved, true
		case StateReady, StateSuspended, StateWarm:
			return evDomainStopped, true
		}
	default: // shut off, crashed, gone
		switch st {
		case StateReady, StateSuspended, StateSaved, StateUnknown, StateWarm:
			return evDomainStopped, true
		}
	}
	return 0, false
}

// watchEvents turns the hypervisor's crash and stop events into events of
// the unikernels, and a reconnection into a reconciliation.
func (s *Summoner) watchEvents(ctx context.Context) {
	defer s.wg.Done()
	evs := s.hv.Events()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-evs:
			if !ok {
				return
			}
			if ev.Kind == hypervisor.EventReconnected {
				s.log.Info("hypervisor reconnected; reconciling")
				s.kickReconcile()
				continue
			}
			u := s.units.Load().byDomain[ev.Name]
			if u == nil {
				continue
			}
			switch ev.Kind {
			case hypervisor.EventCrashed:
				s.post(u, event{kind: evCrashed, reason: "crash: " + ev.Detail})
			case hypervisor.EventStopped:
				s.post(u, event{kind: evDomainStopped, reason: "external: " + ev.Detail})
			}
		}
	}
}

// errListFailed: the reconciler could not list the domains.
var errListFailed = errors.New("list domains")

// adopted finishes a late adoption (Run could not list the domains): once
// the reconciler has posted what runs, the stopped unikernels are armed
// and boots are allowed.
func (s *Summoner) adopted() {
	if s.unadopted.Load() {
		s.armStopped()
		s.unadopted.Store(false)
		close(s.running)
		s.log.Info("domains adopted; unikernels can be summoned")
		s.refill()
	}
}

// kickReconcile asks the reconciler to run now.
func (s *Summoner) kickReconcile() {
	select {
	case s.reconcileKick <- struct{}{}:
	default:
	}
}

// reconcileLoop reconciles every ReconcileInterval and when kicked; a
// failed reconciliation is retried with backoff. Run arms its first tick.
func (s *Summoner) reconcileLoop(ctx context.Context, tick <-chan struct{}, t Timer) {
	defer s.wg.Done()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-tick:
		case <-s.reconcileKick:
			t.Stop()
		}
		failures++
		if err := s.reconcile(ctx); err != nil {
			if s.unadopted.Load() && errors.Is(err, errListFailed) {
				s.log.Debug("hypervisor still not reachable", zap.Error(err))
				s.m.reconcileErrors.Inc()
				tick, t = s.after(min(s.backoff(failures), s.opts.ReconcileInterval))
				continue
			}
			s.m.reconcileErrors.Inc()
			s.log.Warn("reconcile with the hypervisor", zap.Error(err),
				zap.Duration("retry_in", min(s.backoff(failures), s.opts.ReconcileInterval)))
		} else {
			failures = 0
		}
		wait := s.opts.ReconcileInterval
		if failures > 0 {
			wait = min(s.backoff(failures), wait)
		}
		tick, t = s.after(wait)
	}
}

// reconcile lists the domains and posts to each unikernel whose state
// disagrees the event that settles it. Each event carries the unikernel's
// epoch from before the list, so that it is dropped if the unikernel
// moved on meanwhile.
func (s *Summoner) reconcile(ctx context.Context) error {
	um := s.units.Load()
	epochs := make(map[*unit]uint64, len(um.all))
	for _, u := range um.all {
		epochs[u] = u.epoch.Load()
	}
	lctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	doms, err := s.hv.List(lctx)
	cancel()
	if err != nil {
		return fmt.Errorf("%w: %w", errListFailed, err)
	}
	defer s.adopted()
	byName := make(map[string]hypervisor.Domain, len(doms))
	for _, d := range doms {
		byName[d.Name] = d
		if um.byDomain[d.Name] == nil {
			s.stranger(ctx, d)
		}
	}
	var busy error
	for _, u := range um.all {
		d, found := byName[u.domain]
		k, ok := reconcileEvent(u.State(), d.State, found, u.cfg.Load().Warm)
		if !ok {
			continue
		}
		if epochs[u]%2 == 1 || u.epoch.Load() != epochs[u] {
			// A transition ran during the list: look again soon if
			// nothing else will settle it.
			if u.State() == StateUnknown {
				busy = fmt.Errorf("unikernel %q changed during the list", u.name)
			}
			continue
		}
		s.m.reconcileFixes.WithLabelValues(u.name).Inc()
		s.log.Info("reconciling with the hypervisor", zap.String("unikernel", u.name), zap.Stringer("believed", u.State()),
			zap.Stringer("domain", d.State), zap.Bool("found", found))
		u.activity.Store(s.clock.Now().UnixNano())
		s.post(u, event{kind: k, reason: "reconcile", epoch: epochs[u] + 1})
	}
	return busy
}
