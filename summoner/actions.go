package summoner

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// actionFunc performs one action for u after a transition out of from,
// caused by ev. It may return a follow-up event (the result of a
// hypervisor call) and the error to report to an operator.
type actionFunc func(s *Summoner, u *unit, ev event, from State) (*event, error)

// actions maps each action to its function.
var actions [numActions]actionFunc

func init() {
	actions = [numActions]actionFunc{
		actArm:       (*Summoner).doArm,
		actCount:     (*Summoner).doCount,
		actHold:      (*Summoner).doHold,
		actStart:     (*Summoner).doStart,
		actResume:    (*Summoner).doResume,
		actProbe:     (*Summoner).doProbe,
		actRelease:   (*Summoner).doRelease,
		actCancel:    (*Summoner).doCancel,
		actDrop:      (*Summoner).doDrop,
		actDestroy:   (*Summoner).doDestroy,
		actBackoff:   (*Summoner).doBackoff,
		actStop:      (*Summoner).doStop,
		actTail:      (*Summoner).doTail,
		actReconcile: (*Summoner).doReconcile,
		actPrepare:   (*Summoner).doPrepare,
		actSnapshot:  (*Summoner).doSnapshot,
	}
}

// doArm starts a new boot generation. Its boot timeout is armed by the
// probe (doProbe), once the domain exists: the time a Start or Resume
// call takes (libvirt's create, seconds under load) is bounded by the
// create deadline instead (startAsync).
func (s *Summoner) doArm(u *unit, _ event, _ State) (*event, error) {
	u.cancelBoot()
	u.gen++
	u.snapSave, u.snapRestore = false, false
	return nil, nil
}

// doCount counts a boot: metrics, status timeline, log of its trigger and
// start mode.
func (s *Summoner) doCount(u *unit, _ event, from State) (*event, error) {
	cfg := u.cfg.Load()
	now := s.clock.Now()
	u.bootStart = now
	u.consoleOff = consoleSize(cfg.Spec.ConsoleLog)
	mode := startMode(cfg, from)
	if mode == ModeBoot {
		mode = s.planSnapshot(u, cfg) // takes u.mu
	}
	u.mu.Lock()
	u.boots++
	u.timeline = BootTimeline{Query: u.query, Queued: now, Trigger: u.trigger, Mode: mode}
	t := u.trigger
	u.mu.Unlock()
	s.m.boots.WithLabelValues(u.name).Inc()
	s.m.summons.WithLabelValues(u.name, string(t)).Inc()
	s.log.Info("booting unikernel", zap.String("unikernel", u.name), zap.String("trigger", string(t)),
		zap.String("mode", mode))
	return nil, nil
}

// doHold makes sure the gate holds the addresses (Summon already did: the
// hold is idempotent).
func (s *Summoner) doHold(u *unit, _ event, _ State) (*event, error) {
	cfg := u.cfg.Load()
	s.hold(u, cfg, cfg.bootProtos())
	return nil, nil
}

// doStart starts the domain beside the actor: a hung Start delays nothing
// but its own boot, whose timeout still fires (and cancels it).
func (s *Summoner) doStart(u *unit, _ event, _ State) (*event, error) {
	if u.snapRestore {
		path := u.snapPath
		s.startAsync(u, "restore failed", func(ctx context.Context, spec hypervisor.Spec) error {
			return s.restoreOrBoot(ctx, u, spec, path)
		})
		return nil, nil
	}
	s.startAsync(u, "start failed", func(ctx context.Context, spec hypervisor.Spec) error {
		return s.hv.Start(ctx, spec)
	})
	return nil, nil
}

// doResume resumes the paused domain beside the actor, or starts it if
// that fails. A warm domain restored from a snapshot gets its clock set
// (and its RNG re-seeded) before the probe can release it.
func (s *Summoner) doResume(u *unit, _ event, from State) (*event, error) {
	fromSnapshot := from == StateWarm && u.cfg.Load().Snapshot
	s.startAsync(u, "resume failed", func(ctx context.Context, spec hypervisor.Spec) error {
		err := s.hv.Resume(ctx, u.domain)
		if err != nil {
			s.log.Warn("resume failed; starting instead", zap.String("unikernel", u.name), zap.Error(err))
			return s.hv.Start(ctx, spec)
		}
		if fromSnapshot {
			s.setGuestTime(ctx, u)
		}
		return nil
	})
	return nil, nil
}

// startAsync runs call for u's current boot generation in its own
// goroutine, under a context that cancelBoot cancels. The boot first
// waits for a slot in the start queue (Options.MaxStarting), then arms
// the create deadline (Options.CreateTimeout): a call not returned by
// then times the boot out. A failure is posted as evBootFailed; a call
// that succeeds after its boot was given up destroys what it started.
// The slot is given back by cancelBoot (ready, failed, cancelled).
func (s *Summoner) startAsync(u *unit, why string, call func(context.Context, hypervisor.Spec) error) {
	ctx, cancel := context.WithCancel(s.runCtx)
	started := make(chan struct{})
	ticket := s.startq.enter(s.clock.Now())
	u.startCancel, u.started, u.ticket = cancel, started, ticket
	gen, spec := u.gen, u.cfg.Load().Spec
	u.startCalls.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		defer close(started) // after a failure is posted: the probe never beats it
		defer u.startCalls.Add(-1)
		if !s.awaitSlot(ctx, u, ticket) {
			return // cancelled while queued: cancelBoot left the queue
		}
		deadline := s.clock.AfterFunc(s.opts.CreateTimeout, func() {
			s.post(u, event{kind: evBootTimeout, gen: gen, reason: "create timeout"})
		})
		err := call(ctx, spec)
		deadline.Stop()
		if errors.Is(err, hypervisor.ErrAlreadyRunning) {
			s.log.Info("domain already running; adopting it", zap.String("unikernel", u.name))
			err = nil
		}
		if err == nil && s.opts.Placer != nil {
			s.opts.Placer.Started(u.domain)
		}
		switch {
		case err != nil:
			s.post(u, event{kind: evBootFailed, gen: gen, reason: why, err: err})
		case ctx.Err() != nil && s.runCtx.Err() == nil:
			s.log.Warn("a start returned after its boot was given up; destroying the domain", zap.String("unikernel", u.name))
			dctx, dcancel := s.callCtx()
			defer dcancel()
			if err := s.hv.Stop(dctx, u.domain, hypervisor.StopDestroy); err != nil {
				s.log.Warn("destroy after a late start", zap.String("unikernel", u.name), zap.Error(err))
			}
		}
	}()
}

// awaitSlot waits for u's boot to leave the start queue; it records the
// wait in the timeline, the metrics and the log. It reports false if the
// boot was given up meanwhile.
func (s *Summoner) awaitSlot(ctx context.Context, u *unit, t *startTicket) bool {
	queued := false
	select {
	case <-t.granted:
	default:
		queued = true
		inflight, waiting := s.startq.counts()
		s.log.Info("boot queued: max_starting boots in flight", zap.String("unikernel", u.name),
			zap.Int("in_flight", inflight), zap.Int("queued", waiting))
	}
	if !t.wait(ctx) {
		return false
	}
	now := s.clock.Now()
	waited := now.Sub(t.queuedAt)
	s.m.queueWait.Observe(waited.Seconds())
	u.mu.Lock()
	if u.timeline.Start.IsZero() { // not the save and restore of a boot that made its snapshot
		u.timeline.Start = now
	}
	u.mu.Unlock()
	if queued {
		s.log.Info("boot left the start queue", zap.String("unikernel", u.name), zap.Duration("waited", waited))
	}
	return true
}

// doProbe starts the readiness probe, which posts evReady or evBootFailed
// once the Start call under way (if any) has returned. The boot timeout
// runs from then on, while the probe does: it counts the guest's boot,
// not the wait for libvirt.
func (s *Summoner) doProbe(u *unit, ev event, _ State) (*event, error) {
	pctx, cancel := context.WithCancel(s.runCtx)
	u.probeCancel = cancel
	gen, off, cfg, started := u.gen, u.consoleOff, u.cfg.Load(), u.started
	ready := evReady
	if u.snapSave {
		ready = evSnapshot // save and restore it before the release
	}
	if ev.kind == evAdoptRunning {
		off = 0
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if started != nil {
			select {
			case <-started:
			case <-pctx.Done():
				return
			}
		}
		t := s.clock.AfterFunc(cfg.BootTimeout, func() {
			s.post(u, event{kind: evBootTimeout, gen: gen, reason: "boot timeout"})
		})
		defer t.Stop() // a result is posted, or the boot was given up
		err := s.probe(pctx, cfg, off)
		if pctx.Err() != nil {
			return
		}
		if err != nil {
			s.post(u, event{kind: evBootFailed, gen: gen, reason: "probe failed", err: err})
			return
		}
		s.post(u, event{kind: ready, gen: gen, reason: "probe ok"})
	}()
	return nil, nil
}

// doRelease records a ready boot and replays what the gate held.
func (s *Summoner) doRelease(u *unit, _ event, _ State) (*event, error) {
	u.cancelBoot()
	now := s.clock.Now()
	u.activity.Store(now.UnixNano())
	u.failures = 0
	u.backoffUntil.Store(0)
	u.mu.Lock()
	if !u.bootStart.IsZero() {
		u.lastDur = now.Sub(u.bootStart)
		if !u.timeline.Start.IsZero() {
			u.lastDur = now.Sub(u.timeline.Start) // not the wait in the start queue
		}
		u.timeline.Ready = now
		s.m.bootDuration.WithLabelValues(u.name).Observe(u.lastDur.Seconds())
	}
	u.lastErr = ""
	u.mu.Unlock()
	booted := !u.bootStart.IsZero()
	u.bootStart = time.Time{}
	n := s.unhold(u, true)
	if n > 0 {
		replayed := s.clock.Now()
		u.mu.Lock()
		if booted && u.timeline.FirstReplay.IsZero() {
			u.timeline.FirstReplay = replayed
		}
		u.mu.Unlock()
		s.log.Info("held SYNs replayed", zap.String("unikernel", u.name), zap.Int("packets", n),
			zap.Stringers("addrs", u.cfg.Load().Addrs))
	}
	return nil, nil
}

// doCancel cancels the boot timeout, the probe and a Start under way.
func (s *Summoner) doCancel(u *unit, _ event, _ State) (*event, error) {
	u.cancelBoot()
	return nil, nil
}

// doDrop answers the held clients with RST.
func (s *Summoner) doDrop(u *unit, _ event, _ State) (*event, error) {
	s.unhold(u, false)
	return nil, nil
}

// doDestroy destroys the domain of a failed boot; errors are logged.
func (s *Summoner) doDestroy(u *unit, _ event, _ State) (*event, error) {
	ctx, cancel := s.callCtx()
	defer cancel()
	err := s.hv.Stop(ctx, u.domain, hypervisor.StopDestroy)
	if err != nil && !errors.Is(err, hypervisor.ErrNotRunning) && !errors.Is(err, hypervisor.ErrNotFound) {
		s.log.Warn("destroy after failed boot", zap.String("unikernel", u.name), zap.Error(err))
	}
	return nil, nil
}

// doBackoff counts a failure and sets the retry backoff.
func (s *Summoner) doBackoff(u *unit, ev event, _ State) (*event, error) {
	u.failures++
	d := s.backoff(u.failures)
	now := s.clock.Now()
	u.backoffUntil.Store(now.Add(d).UnixNano())
	u.bootStart = time.Time{}
	why := ev.reason
	if ev.err != nil {
		why += ": " + ev.err.Error()
	}
	u.mu.Lock()
	u.lastErr = why
	u.mu.Unlock()
	s.m.failures.WithLabelValues(u.name).Inc()
	s.log.Warn("unikernel boot failed", zap.String("unikernel", u.name), zap.String("why", why),
		zap.Int("failures", u.failures), zap.Duration("backoff", d))
	// Armed again when the backoff is over (if still failed then); a post
	// after Run ended is refused, so the timer needs no stopping.
	s.clock.AfterFunc(d, func() { s.post(u, event{kind: evRearm}) })
	return nil, nil
}

// doTail logs the end of the console of a crashed unikernel.
func (s *Summoner) doTail(u *unit, ev event, _ State) (*event, error) {
	cfg := u.cfg.Load()
	tail := consoleTail(cfg.Spec.ConsoleLog, 20)
	s.log.Warn("unikernel crashed", zap.String("unikernel", u.name), zap.String("detail", ev.reason),
		zap.String("console_log", cfg.Spec.ConsoleLog), zap.Strings("console_tail", tail))
	u.mu.Lock()
	u.lastErr = ev.reason
	u.mu.Unlock()
	return nil, nil
}

// doReconcile asks the reconciler to settle u's state now.
func (s *Summoner) doReconcile(*unit, event, State) (*event, error) {
	s.kickReconcile()
	return nil, nil
}
