package summoner

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// doStop stops the domain with the event's mode (the unikernel's when
// empty). The gate holds the addresses before the call, so that a packet
// arriving during the stop is held for the next boot. A stop that asks to
// discard the saved state (reload of a changed spec, removal, operator
// destroy) never suspends or saves, and discards a managed save image.
// It runs in the actor, bounded by StopTimeout: a summon during the stop
// waits in the actor's queue until it ends, since the domain cannot boot
// before (docs/summoner.md).
func (s *Summoner) doStop(u *unit, ev event, from State) (*event, error) {
	cfg := u.cfg.Load()
	mode := ev.mode
	if mode == "" {
		mode = cfg.StopMode
	}
	if (ev.discard || from == StateWarm) && (mode == hypervisor.StopSuspend || mode == hypervisor.StopSave) ||
		from == StateWarm && mode == hypervisor.StopShutdown {
		mode = hypervisor.StopDestroy // a warm domain's guest never ran: nothing to shut down
	}
	if from == StateSaved {
		return s.stopSaved(u, ev)
	}
	if p := cfg.armProtos(); len(p) > 0 {
		s.hold(u, cfg, p)
	}
	ctx, cancel := context.WithTimeout(s.runCtx, s.opts.StopTimeout)
	err := s.hv.Stop(ctx, u.domain, mode)
	cancel()
	if from == StateStarting && errors.Is(err, hypervisor.ErrNotFound) {
		// a boot stopped before its domain existed (queued, say)
		return &event{kind: evStoppedOff, reason: ev.reason}, nil
	}
	if err == nil {
		if ev.discard {
			s.discardSave(u)
		}
		switch mode {
		case hypervisor.StopSuspend:
			return &event{kind: evSuspendedDone, reason: ev.reason}, nil
		case hypervisor.StopSave:
			return &event{kind: evSavedDone, reason: ev.reason}, nil
		}
		return &event{kind: evStoppedOff, reason: ev.reason}, nil
	}
	s.log.Warn("stop failed", zap.String("unikernel", u.name), zap.String("mode", string(mode)), zap.Error(err))
	return s.afterFailedStop(u, err), err
}

// stopSaved stops a saved unikernel: nothing runs, so only the save image
// is discarded (accept lets only such stops through).
func (s *Summoner) stopSaved(u *unit, ev event) (*event, error) {
	if !ev.discard {
		return &event{kind: evSavedDone, reason: ev.reason}, nil
	}
	s.discardSave(u)
	return &event{kind: evStoppedOff, reason: ev.reason}, nil
}

// afterFailedStop asks the hypervisor what became of the domain after a
// failed stop. If it cannot tell, the state is unknown: never stopped.
func (s *Summoner) afterFailedStop(u *unit, err error) *event {
	ctx, cancel := s.callCtx()
	st, serr := s.hv.State(ctx, u.domain)
	cancel()
	switch {
	case errors.Is(serr, hypervisor.ErrNotFound):
		return &event{kind: evStoppedOff, reason: "stop failed, domain gone", err: err}
	case serr != nil:
		return &event{kind: evStopUnknown, reason: "stop failed, domain state unknown", err: errors.Join(err, serr)}
	case st == hypervisor.StateRunning:
		return &event{kind: evStopFailed, reason: "stop failed", err: err}
	case st == hypervisor.StatePaused:
		return &event{kind: evSuspendedDone, reason: "stop failed, domain paused", err: err}
	case st == hypervisor.StateSaved:
		return &event{kind: evSavedDone, reason: "stop failed, domain saved", err: err}
	}
	return &event{kind: evStoppedOff, reason: "stop failed, domain gone", err: err}
}

// discardSave removes u's managed save image, if any; errors are logged.
func (s *Summoner) discardSave(u *unit) {
	ctx, cancel := s.callCtx()
	defer cancel()
	err := s.hv.DiscardSave(ctx, u.domain)
	if err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		s.log.Warn("discard managed save image", zap.String("unikernel", u.name), zap.Error(err))
	}
}
