package summoner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// event is an input of a unikernel's actor.
type event struct {
	kind   evKind
	gen    uint64 // boot generation, for probe results and timeouts; 0: any
	mode   hypervisor.StopMode
	reason string
	err    error
	reply  chan error // operator Stop: the result
}

// claim is what a unikernel counts against the budget.
type claim struct {
	running, booting int
	memory           uint64
}

func (c claim) add(d claim) claim {
	return claim{c.running + d.running, c.booting + d.booting, c.memory + d.memory}
}

func (c claim) sub(d claim) claim {
	return claim{c.running - d.running, c.booting - d.booting, c.memory - d.memory}
}

func (c claim) max(d claim) claim {
	return claim{max(c.running, d.running), max(c.booting, d.booting), max(c.memory, d.memory)}
}

func claimFor(st State, mem uint64) claim {
	switch st {
	case StateStarting:
		return claim{1, 1, mem}
	case StateReady:
		return claim{1, 0, mem}
	case StateSuspended:
		return claim{0, 0, mem}
	}
	return claim{}
}

// unit is one unikernel's record.
type unit struct {
	name   string
	domain string
	cfg    atomic.Pointer[Unikernel]

	state        atomic.Int32 // the live state, set before a transition's actions
	shown        atomic.Int32 // the state once its actions are done (Status, WaitState)
	activity     atomic.Int64 // unix ns of the last DNS query or traffic
	backoffUntil atomic.Int64 // unix ns

	mu       sync.Mutex // guards the fields below
	queue    []event
	draining bool
	pending  bool          // a boot was requested and its evSummon not handled yet
	waitCh   chan struct{} // closed when a requested boot settles
	holdCh   chan struct{} // closed once the gate holds the addresses for the last requested boot
	holdDone bool          // request already held the addresses: the boot's actHold skips it
	removed  bool
	query    time.Time
	since    time.Time
	boots    int
	lastDur  time.Duration
	timeline BootTimeline
	lastErr  string

	// budget (guarded by Summoner.budgetMu)
	claim    claim
	evicting bool

	// owned by the actor
	gen         uint64
	timer       Timer
	probeCancel context.CancelFunc
	failures    int
	bootStart   time.Time
	consoleOff  int64

	// owned by the reaper
	lastStats hypervisor.InterfaceStats
	statsSeen bool
}

func (s *Summoner) newUnit(c *Unikernel) *unit {
	u := &unit{name: c.Name, domain: c.Spec.Name, since: s.clock.Now()}
	u.cfg.Store(c)
	s.m.state.WithLabelValues(u.name, StateStopped.String()).Set(1)
	return u
}

// State returns the unit's state.
func (u *unit) State() State { return State(u.state.Load()) }

func (u *unit) status() Status {
	cfg := u.cfg.Load()
	u.mu.Lock()
	defer u.mu.Unlock()
	st := Status{
		Name:             u.name,
		State:            State(u.shown.Load()),
		Addrs:            cfg.Addrs,
		Since:            u.since,
		LastActivity:     time.Unix(0, u.activity.Load()),
		Boots:            u.boots,
		LastBootDuration: u.lastDur,
		LastBoot:         u.timeline,
		LastError:        u.lastErr,
	}
	if u.activity.Load() == 0 {
		st.LastActivity = time.Time{}
	}
	if st.State == StateFailed {
		st.BackoffUntil = time.Unix(0, u.backoffUntil.Load())
	}
	return st
}

// cancelBoot stops the boot timeout and the probe; actor only.
func (u *unit) cancelBoot() {
	if u.timer != nil {
		u.timer.Stop()
		u.timer = nil
	}
	if u.probeCancel != nil {
		u.probeCancel()
		u.probeCancel = nil
	}
}

// post queues ev for u's actor, starting the actor if it is not running.
// It reports false once the summoner has stopped. Before Run, events are
// queued and handled once Run starts.
func (s *Summoner) post(u *unit, ev event) bool {
	s.lifeMu.RLock()
	defer s.lifeMu.RUnlock()
	if s.phase == 2 {
		return false
	}
	u.mu.Lock()
	u.queue = append(u.queue, ev)
	spawn := s.phase == 1 && !u.draining
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
		if !s.accept(u, ev) {
			if ev.kind == evSummon {
				s.summonHandled(u)
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
			s.summonHandled(u)
		}
		for _, a := range acts {
			next, err := s.do(u, a, ev)
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
			u.shown.Store(int32(to))
			s.notifyChanged()
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

// accept applies the guards that transition cannot: stale boot
// generations, idle re-check, and hypervisor events about an earlier
// incarnation of the domain.
func (s *Summoner) accept(u *unit, ev event) bool {
	switch ev.kind {
	case evReady, evBootFailed, evBootTimeout:
		return ev.gen == 0 || ev.gen == u.gen
	case evIdle:
		idle := u.cfg.Load().IdleTimeout
		return idle > 0 && s.clock.Now().UnixNano()-u.activity.Load() >= int64(idle)
	case evCrashed, evDomainStopped:
		st, err := s.hv.State(s.runCtx, u.domain)
		if err == nil && (st == hypervisor.StateRunning || st == hypervisor.StatePaused) {
			s.log.Debug("ignoring a stale hypervisor event", zap.String("unikernel", u.name), zap.String("event", ev.reason))
			return false
		}
	}
	return true
}

// summonHandled clears the pending flag and re-derives u's budget claim.
func (s *Summoner) summonHandled(u *unit) {
	u.mu.Lock()
	u.pending = false
	s.budgetMu.Lock()
	s.setClaimLocked(u, claimFor(u.State(), u.cfg.Load().Memory))
	s.budgetMu.Unlock()
	u.mu.Unlock()
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
	u.state.Store(int32(to))
	c := claimFor(to, cfg.Memory)
	if u.pending {
		c = c.max(claimFor(StateStarting, cfg.Memory))
	}
	s.budgetMu.Lock()
	s.setClaimLocked(u, c)
	u.evicting = false
	s.budgetMu.Unlock()
	u.mu.Unlock()

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

// setClaimLocked replaces u's claim; s.budgetMu held.
func (s *Summoner) setClaimLocked(u *unit, c claim) {
	s.used = s.used.sub(u.claim).add(c)
	u.claim = c
	s.m.running.Set(float64(s.used.running))
	s.m.booting.Set(float64(s.used.booting))
	s.m.memory.Set(float64(s.used.memory))
}

func (s *Summoner) fits(c claim) bool {
	o := s.opts
	return (o.MaxRunning == 0 || c.running <= o.MaxRunning) &&
		(o.MaxBooting == 0 || c.booting <= o.MaxBooting) &&
		(o.MemoryBudget == 0 || c.memory <= o.MemoryBudget)
}

// reserve claims the budget for booting u (u.mu held), choosing idle
// unikernels to evict, least recently active first, if it does not fit.
// The victims' claims are released at once; the caller stops them.
func (s *Summoner) reserve(u *unit, now time.Time) ([]*unit, error) {
	s.budgetMu.Lock()
	defer s.budgetMu.Unlock()
	mem := u.cfg.Load().Memory
	need := claimFor(StateStarting, mem).max(u.claim)
	want := s.used.sub(u.claim).add(need)
	if s.fits(want) {
		s.setClaimLocked(u, need)
		return nil, nil
	}
	refuse := func(why string) ([]*unit, error) {
		s.m.budgetRefused.Inc()
		s.log.Warn("summon refused: resource budget full", zap.String("unikernel", u.name), zap.String("why", why),
			zap.Int("running", s.used.running), zap.Int("booting", s.used.booting), zap.Uint64("memory", s.used.memory))
		return nil, fmt.Errorf("summon %q: %w (%s)", u.name, ErrBudget, why)
	}
	if o := s.opts.MaxBooting; o > 0 && want.booting > o {
		return refuse("too many booting")
	}
	var cands []*unit
	for _, c := range s.units.Load().all {
		if c == u || c.evicting || c.claim == (claim{}) {
			continue
		}
		switch c.State() {
		case StateReady:
			if now.UnixNano()-c.activity.Load() >= int64(s.opts.EvictIdle) {
				cands = append(cands, c)
			}
		case StateSuspended:
			cands = append(cands, c)
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].activity.Load() < cands[j].activity.Load() })
	var victims []*unit
	for _, c := range cands {
		if s.fits(want) {
			break
		}
		if c.claim.running == 0 && (s.opts.MemoryBudget == 0 || want.memory <= s.opts.MemoryBudget) {
			continue // a suspended one only frees memory
		}
		victims = append(victims, c)
		want = want.sub(c.claim)
	}
	if !s.fits(want) {
		return refuse("nothing idle to stop")
	}
	for _, v := range victims {
		s.setClaimLocked(v, claim{})
		v.evicting = true
	}
	s.setClaimLocked(u, need)
	return victims, nil
}

// do performs one action; it may return a follow-up event (the result of a
// hypervisor call) and the error to report to an operator.
func (s *Summoner) do(u *unit, a action, ev event) (*event, error) {
	ctx := s.runCtx
	cfg := u.cfg.Load()
	switch a {
	case actArm:
		u.cancelBoot()
		u.gen++
		gen := u.gen
		u.timer = s.clock.AfterFunc(cfg.BootTimeout, func() {
			s.post(u, event{kind: evBootTimeout, gen: gen, reason: "boot timeout"})
		})
	case actCount:
		now := s.clock.Now()
		u.bootStart = now
		u.consoleOff = consoleSize(cfg.Spec.ConsoleLog)
		u.mu.Lock()
		u.boots++
		u.timeline = BootTimeline{Query: u.query, Start: now}
		u.mu.Unlock()
		s.m.boots.WithLabelValues(u.name).Inc()
	case actHold:
		u.mu.Lock()
		done := u.holdDone
		u.holdDone = false
		u.mu.Unlock()
		if s.gate != nil && !done {
			if err := s.gate.Hold(cfg.Addrs, mac(cfg)); err != nil {
				s.log.Warn("gate hold failed; booting anyway", zap.String("unikernel", u.name), zap.Error(err))
			}
		}
	case actStart:
		err := s.hv.Start(ctx, cfg.Spec)
		if errors.Is(err, hypervisor.ErrAlreadyRunning) {
			s.log.Info("domain already running; adopting it", zap.String("unikernel", u.name))
			err = nil
		}
		if err != nil {
			return &event{kind: evBootFailed, gen: u.gen, reason: "start failed", err: err}, err
		}
	case actResume:
		err := s.hv.Resume(ctx, u.domain)
		if err != nil {
			s.log.Warn("resume failed; starting instead", zap.String("unikernel", u.name), zap.Error(err))
			err = s.hv.Start(ctx, cfg.Spec)
			if errors.Is(err, hypervisor.ErrAlreadyRunning) {
				err = nil
			}
		}
		if err != nil {
			return &event{kind: evBootFailed, gen: u.gen, reason: "resume failed", err: err}, err
		}
	case actProbe:
		pctx, cancel := context.WithCancel(ctx)
		u.probeCancel = cancel
		gen, off := u.gen, u.consoleOff
		if ev.kind == evAdoptRunning {
			off = 0
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := s.probe(pctx, cfg, off)
			if pctx.Err() != nil {
				return
			}
			if err != nil {
				s.post(u, event{kind: evBootFailed, gen: gen, reason: "probe failed", err: err})
				return
			}
			s.post(u, event{kind: evReady, gen: gen, reason: "probe ok"})
		}()
	case actRelease:
		u.cancelBoot()
		now := s.clock.Now()
		u.activity.Store(now.UnixNano())
		u.failures = 0
		u.backoffUntil.Store(0)
		u.mu.Lock()
		if !u.bootStart.IsZero() {
			u.lastDur = now.Sub(u.bootStart)
			u.timeline.Ready = now
			s.m.bootDuration.WithLabelValues(u.name).Observe(u.lastDur.Seconds())
		}
		u.lastErr = ""
		u.mu.Unlock()
		u.bootStart = time.Time{}
		if s.gate != nil {
			if err := s.gate.Release(cfg.Addrs); err != nil {
				s.log.Warn("gate release failed", zap.String("unikernel", u.name), zap.Error(err))
			}
		}
	case actCancel:
		u.cancelBoot()
	case actDrop:
		if s.gate != nil {
			if err := s.gate.Drop(cfg.Addrs); err != nil {
				s.log.Warn("gate drop failed", zap.String("unikernel", u.name), zap.Error(err))
			}
		}
	case actDestroy:
		err := s.hv.Stop(ctx, u.domain, hypervisor.StopDestroy)
		if err != nil && !errors.Is(err, hypervisor.ErrNotRunning) && !errors.Is(err, hypervisor.ErrNotFound) {
			s.log.Warn("destroy after failed boot", zap.String("unikernel", u.name), zap.Error(err))
		}
	case actBackoff:
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
	case actStop:
		mode := ev.mode
		if mode == "" {
			mode = cfg.StopMode
		}
		err := s.hv.Stop(ctx, u.domain, mode)
		if err == nil {
			switch mode {
			case hypervisor.StopSuspend:
				return &event{kind: evSuspendedDone, reason: ev.reason}, nil
			case hypervisor.StopSave:
				return &event{kind: evSavedDone, reason: ev.reason}, nil
			}
			return &event{kind: evStoppedOff, reason: ev.reason}, nil
		}
		s.log.Warn("stop failed", zap.String("unikernel", u.name), zap.String("mode", string(mode)), zap.Error(err))
		st, serr := s.hv.State(ctx, u.domain)
		switch {
		case serr == nil && st == hypervisor.StateRunning:
			return &event{kind: evStopFailed, reason: "stop failed", err: err}, err
		case serr == nil && st == hypervisor.StatePaused:
			return &event{kind: evSuspendedDone, reason: "stop failed, domain paused", err: err}, err
		case serr == nil && st == hypervisor.StateSaved:
			return &event{kind: evSavedDone, reason: "stop failed, domain saved", err: err}, err
		}
		return &event{kind: evStoppedOff, reason: "stop failed, domain gone", err: err}, err
	case actTail:
		tail := consoleTail(cfg.Spec.ConsoleLog, 20)
		s.log.Warn("unikernel crashed", zap.String("unikernel", u.name), zap.String("detail", ev.reason),
			zap.String("console_log", cfg.Spec.ConsoleLog), zap.Strings("console_tail", tail))
		u.mu.Lock()
		u.lastErr = ev.reason
		u.mu.Unlock()
	}
	return nil, nil
}
