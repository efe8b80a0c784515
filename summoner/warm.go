package summoner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// The warm pool (issue 16): a unikernel with Warm keeps, while it is
// stopped, a domain created paused before its guest runs (StateWarm), so
// that a summon is a resume. The pool is refilled after every stop and
// whenever a warm slot is freed (a warm domain used, stopped or lost),
// most recently active unikernels first, within Options.WarmMax and
// WarmMemory.

// startMode is the BootTimeline.Mode of a boot of c out of state from.
func startMode(c *Unikernel, from State) string {
	switch from {
	case StateWarm:
		if c.Snapshot {
			return ModeWarmSnapshot
		}
		return ModeWarm
	case StateSuspended:
		return ModeResume
	case StateSaved:
		return ModeRestore
	}
	return ModeBoot
}

// refill posts evPrepare to the stopped warm unikernels, most recently
// active first, for as many as the warm budget has room for. Each one's
// slot is reserved here; the actor releases it if it cannot take it.
func (s *Summoner) refill() {
	if s.limits.warmMax == 0 || s.unadopted.Load() {
		return
	}
	var cands []*unit
	for _, u := range s.units.Load().all {
		if c := u.cfg.Load(); c.Warm && u.State() == StateStopped && s.warmSource(c) {
			cands = append(cands, u)
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].activity.Load() > cands[j].activity.Load() })
	now := s.clock.Now().UnixNano()
	for _, u := range cands {
		u.mu.Lock()
		ok := !u.removed && !u.pending && !u.warming && u.State() == StateStopped && now >= u.warmRetry.Load() &&
			s.reserveWarm(u)
		if ok {
			u.warming = true
		}
		u.mu.Unlock()
		if ok {
			s.post(u, event{kind: evPrepare, reason: "warm pool"})
		}
	}
}

// warmSource reports whether c's warm domain can be prepared: always for
// a booting unikernel, only once its save file exists for a snapshot one
// (its first start boots and makes the file).
func (s *Summoner) warmSource(c *Unikernel) bool {
	if !c.Snapshot {
		return true
	}
	path, err := s.snapshotPath(c)
	if err != nil {
		return false
	}
	_, err = os.Stat(path)
	return err == nil
}

// prepare creates c's warm domain: paused before its guest runs, or, for
// a snapshot unikernel, its save file restored paused. A save file that
// cannot be restored is discarded: the next start boots and makes a new
// one.
func (s *Summoner) prepare(ctx context.Context, u *unit, c *Unikernel) error {
	if !c.Snapshot {
		return s.hv.Prepare(ctx, c.Spec)
	}
	path, err := s.snapshotPath(c)
	if err != nil {
		return fmt.Errorf("prepare from a snapshot: %w", err)
	}
	err = s.hv.PrepareSnapshot(ctx, c.Spec, path)
	if err != nil && ctx.Err() == nil && !errors.Is(err, hypervisor.ErrAlreadyRunning) && !errors.Is(err, hypervisor.ErrUnavailable) {
		s.discardSnapshot(u, path, "restore paused for the warm pool", err)
	}
	return err
}

// doPrepare creates the warm domain (prepare). It runs in the actor,
// under the create deadline (Options.CreateTimeout): a summon that comes
// meanwhile is held at the gate and resumes the domain once it exists.
func (s *Summoner) doPrepare(u *unit, _ event, _ State) (*event, error) {
	cfg := u.cfg.Load()
	ctx, cancel := context.WithTimeout(s.runCtx, s.opts.CreateTimeout)
	t0 := time.Now()
	err := s.prepare(ctx, u, cfg)
	cancel()
	if errors.Is(err, hypervisor.ErrAlreadyRunning) {
		// A domain exists already: the reconciler adopts it.
		s.kickReconcile()
	}
	if err != nil {
		u.warmFails++
		d := s.backoff(u.warmFails)
		u.warmRetry.Store(s.clock.Now().Add(d).UnixNano())
		s.m.prepares.WithLabelValues(u.name, "error").Inc()
		s.log.Warn("preparing a warm domain failed", zap.String("unikernel", u.name), zap.Error(err),
			zap.Duration("retry_in", d))
		return &event{kind: evPrepareFailed, reason: "prepare failed", err: err}, nil
	}
	u.warmFails = 0
	if s.opts.Placer != nil {
		s.opts.Placer.Started(u.domain)
	}
	s.m.prepares.WithLabelValues(u.name, "ok").Inc()
	s.log.Info("warm domain prepared", zap.String("unikernel", u.name), zap.Bool("from_snapshot", cfg.Snapshot),
		zap.Duration("took", time.Since(t0)))
	return nil, nil
}
