// Package hvtest is a scriptable, in-memory fake of hypervisor.Hypervisor
// (and hypervisor.StatsReader) for unit tests.
//
// The fake boots nothing: Start records the spec, moves the domain to
// running and emits EventStarted at once. Whether the *guest* is ready is
// decided by the test with SetReady (or SetAutoReady); a consumer's readiness
// prober can block on WaitReady. Tests script failures with FailStart,
// FailStop, HangStart, Crash, Vanish and SetUnavailable, feed traffic
// counters with SetStats/AddTraffic, emit Reconnected, and wait for what they
// expect with WaitStarts/WaitState instead of sleeping.
//
// Domain life cycle in the fake:
//
//	Start:   absent/shutoff/crashed → running (EventStarted)
//	         saved  → running, restored (EventStarted, Detail "restored")
//	         paused → running (EventResumed)
//	         running → ErrAlreadyRunning
//	Prepare: like Start, but the domain ends paused (a warm domain);
//	         running/paused → ErrAlreadyRunning
//	Stop:    running/paused → shutoff (destroy, shutdown: EventStopped)
//	         running → paused (suspend: EventSuspended)
//	         running/paused → saved (save: EventStopped, Detail "saved")
//	         other states → ErrNotRunning
//	Resume:  paused → running (EventResumed), else ErrNotRunning
//	Crash:   running/paused → crashed (EventCrashed)
//	SetGuestTime: running with Spec.Agent → guest clock = host clock,
//	         no Agent → ErrNoAgent, not running → ErrNotRunning
//
// The guest's clock (GuestClock) stops while the domain is suspended or
// saved, as a real guest's does, and is behind the host's afterwards until
// SetGuestTime.
//
// Guest readiness survives suspend and save (memory is kept) and is reset by
// destroy, shutdown and crash. Foreign domains (AddForeign) are never listed
// and every operation on them gives hypervisor.ErrForeign.
//
// Every method is safe for concurrent use. Events are queued without bound
// and delivered in order on Events(); Close closes that channel.
package hvtest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// Call is one operation the fake was asked to perform, as recorded for
// OnCall hooks and Calls.
type Call struct {
	Op   string // "start", "prepare", "stop", "resume", "discard", "set-time", "save-snapshot", "restore-snapshot"
	Name string
	Mode hypervisor.StopMode // for "stop"
	Err  error               // the result
}

func (c Call) String() string {
	s := c.Op + " " + c.Name
	if c.Mode != "" {
		s += " " + string(c.Mode)
	}
	if c.Err != nil {
		s += " (" + c.Err.Error() + ")"
	}
	return s
}

type domain struct {
	spec    hypervisor.Spec
	state   hypervisor.State
	started time.Time
	ready   bool
	starts  int
	// restores counts RestoreSnapshot calls that started it.
	restores int
	stats    hypervisor.InterfaceStats
	// The guest's clock: behind the host's by lag, and stopped since
	// stoppedAt while suspended or saved (zero while it runs), like a
	// real guest's whose hypervisor clock stops with its vCPUs.
	lag       time.Duration
	stoppedAt time.Time
}

// stopClock stops the guest's clock (suspend, save).
func (d *domain) stopClock(now time.Time) {
	if d.stoppedAt.IsZero() {
		d.stoppedAt = now
	}
}

// runClock lets the guest's clock run again (resume, restore): it is now
// behind by the time it was stopped.
func (d *domain) runClock(now time.Time) {
	if !d.stoppedAt.IsZero() {
		d.lag += now.Sub(d.stoppedAt)
		d.stoppedAt = time.Time{}
	}
}

// Fake is the fake hypervisor. Create it with New and Close it.
type Fake struct {
	mu          sync.Mutex
	domains     map[string]*domain
	foreign     map[string]bool
	failStart   map[string]error
	failStop    map[string]error
	failSave    map[string]error
	failRestore map[string]error
	agentLate   map[string]int           // SetGuestTime calls of name to fail as if the agent had not connected yet
	hang        map[string]chan struct{} // Start of name blocks until closed
	hangStop    map[string]chan struct{} // Stop of name blocks until closed
	hanging     map[string]int           // Start/Prepare/Stop calls of name blocked on hang or hangStop now
	unavailable bool
	autoReady   bool
	closed      bool
	calls       []Call
	hook        func(Call)
	changed     chan struct{} // closed and replaced on every change

	queue  []hypervisor.Event
	wake   chan struct{}
	events chan hypervisor.Event
	done   chan struct{}
	pumpWG sync.WaitGroup
}

var (
	_ hypervisor.Hypervisor  = (*Fake)(nil)
	_ hypervisor.StatsReader = (*Fake)(nil)
)

// New returns an empty fake hypervisor. It starts one goroutine delivering
// events; Close stops it.
func New() *Fake {
	f := &Fake{
		domains:     map[string]*domain{},
		foreign:     map[string]bool{},
		failStart:   map[string]error{},
		failStop:    map[string]error{},
		failSave:    map[string]error{},
		failRestore: map[string]error{},
		agentLate:   map[string]int{},
		hang:        map[string]chan struct{}{},
		hangStop:    map[string]chan struct{}{},
		hanging:     map[string]int{},
		changed:     make(chan struct{}),
		wake:        make(chan struct{}, 1),
		events:      make(chan hypervisor.Event),
		done:        make(chan struct{}),
	}
	f.pumpWG.Add(1)
	go f.pump()
	return f
}

func (f *Fake) pump() {
	defer f.pumpWG.Done()
	defer close(f.events)
	for {
		f.mu.Lock()
		var ev hypervisor.Event
		have := len(f.queue) > 0
		if have {
			ev = f.queue[0]
			f.queue = f.queue[1:]
		}
		f.mu.Unlock()
		if !have {
			select {
			case <-f.wake:
				continue
			case <-f.done:
				return
			}
		}
		select {
		case f.events <- ev:
		case <-f.done:
			return
		}
	}
}

// emitLocked queues an event and signals waiters; f.mu must be held.
func (f *Fake) emitLocked(name string, kind hypervisor.EventKind, detail string) {
	if f.closed {
		return
	}
	f.queue = append(f.queue, hypervisor.Event{Name: name, Kind: kind, Time: time.Now(), Detail: detail})
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// changedLocked wakes every Wait*; f.mu must be held.
func (f *Fake) changedLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// checkLocked returns the error every operation gives when the fake is
// closed, unavailable, or name is foreign.
func (f *Fake) checkLocked(name string) error {
	if f.closed || f.unavailable {
		return hypervisor.ErrUnavailable
	}
	if f.foreign[name] {
		return hypervisor.ErrForeign
	}
	return nil
}

// domainLocked returns name's domain, or checkLocked's error, or
// ErrNotFound.
func (f *Fake) domainLocked(name string) (*domain, error) {
	if err := f.checkLocked(name); err != nil {
		return nil, err
	}
	d := f.domains[name]
	if d == nil {
		return nil, hypervisor.ErrNotFound
	}
	return d, nil
}

// withDomain runs fn on name's domain with f locked, unless ctx is done
// or domainLocked fails.
func (f *Fake) withDomain(ctx context.Context, name string, fn func(d *domain) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.domainLocked(name)
	if err != nil {
		return err
	}
	return fn(d)
}

func (f *Fake) record(c Call) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	hook := f.hook
	f.mu.Unlock()
	if hook != nil {
		hook(c)
	}
}

// Start implements hypervisor.Hypervisor.
func (f *Fake) Start(ctx context.Context, spec hypervisor.Spec) error {
	err := f.start(ctx, spec, false)
	f.record(Call{Op: "start", Name: spec.Name, Err: err})
	if err != nil {
		return fmt.Errorf("start %q: %w", spec.Name, err)
	}
	return nil
}

// Prepare implements hypervisor.Hypervisor: the domain is created paused
// (EventStarted, Detail "paused"); its guest becomes ready (per
// SetAutoReady) only once it is resumed or started.
func (f *Fake) Prepare(ctx context.Context, spec hypervisor.Spec) error {
	err := f.start(ctx, spec, true)
	f.record(Call{Op: "prepare", Name: spec.Name, Err: err})
	if err != nil {
		return fmt.Errorf("prepare %q: %w", spec.Name, err)
	}
	return nil
}

func (f *Fake) start(ctx context.Context, spec hypervisor.Spec, paused bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := f.waitHang(ctx, f.hang, spec.Name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLocked(spec.Name); err != nil {
		return err
	}
	if err, ok := f.failStart[spec.Name]; ok {
		delete(f.failStart, spec.Name)
		return err
	}
	d := f.domains[spec.Name]
	if d == nil {
		d = &domain{state: hypervisor.StateShutoff}
		f.domains[spec.Name] = d
	}
	switch d.state {
	case hypervisor.StateRunning:
		return hypervisor.ErrAlreadyRunning
	case hypervisor.StatePaused:
		if paused {
			return hypervisor.ErrAlreadyRunning
		}
		d.state = hypervisor.StateRunning
		d.runClock(time.Now())
		f.emitLocked(spec.Name, hypervisor.EventResumed, "unpaused")
	case hypervisor.StateSaved:
		d.spec = spec
		d.state = hypervisor.StateRunning
		d.runClock(time.Now())
		d.started = time.Now()
		d.starts++
		f.emitLocked(spec.Name, hypervisor.EventStarted, "restored")
	default:
		d.spec = spec
		d.state = hypervisor.StateRunning
		d.started = time.Now()
		d.starts++
		d.ready = f.autoReady
		d.lag, d.stoppedAt = 0, time.Time{} // a fresh guest reads the host's clock at boot
		f.emitLocked(spec.Name, hypervisor.EventStarted, "booted")
	}
	if paused {
		d.state = hypervisor.StatePaused
		f.emitLocked(spec.Name, hypervisor.EventSuspended, "paused")
	}
	f.changedLocked()
	return nil
}

// waitHang blocks while HangStart (hangs is f.hang) or HangStop
// (f.hangStop) holds the calls of name, counted in f.hanging, until
// released or ctx is done (then it returns ctx.Err()).
func (f *Fake) waitHang(ctx context.Context, hangs map[string]chan struct{}, name string) error {
	f.mu.Lock()
	hang := hangs[name]
	if hang == nil {
		f.mu.Unlock()
		return nil
	}
	f.hanging[name]++
	f.changedLocked()
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.hanging[name]--
		f.changedLocked()
		f.mu.Unlock()
	}()
	select {
	case <-hang:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop implements hypervisor.Hypervisor.
func (f *Fake) Stop(ctx context.Context, name string, mode hypervisor.StopMode) error {
	err := f.stop(ctx, name, mode)
	f.record(Call{Op: "stop", Name: name, Mode: mode, Err: err})
	if err != nil {
		return fmt.Errorf("stop %q (%s): %w", name, mode, err)
	}
	return nil
}

func (f *Fake) stop(ctx context.Context, name string, mode hypervisor.StopMode) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := hypervisor.ParseStopMode(string(mode)); err != nil {
		return err
	}
	if err := f.waitHang(ctx, f.hangStop, name); err != nil {
		return err
	}
	return f.withDomain(ctx, name, func(d *domain) error {
		if d.state != hypervisor.StateRunning && d.state != hypervisor.StatePaused {
			return hypervisor.ErrNotRunning
		}
		if err, ok := f.failStop[name]; ok {
			delete(f.failStop, name)
			return err
		}
		switch mode {
		case hypervisor.StopDestroy, hypervisor.StopShutdown:
			d.state = hypervisor.StateShutoff
			d.ready = false
			f.emitLocked(name, hypervisor.EventStopped, string(mode))
		case hypervisor.StopSuspend:
			if d.state == hypervisor.StatePaused {
				return nil
			}
			d.state = hypervisor.StatePaused
			d.stopClock(time.Now())
			f.emitLocked(name, hypervisor.EventSuspended, "paused")
		case hypervisor.StopSave:
			d.state = hypervisor.StateSaved
			d.stopClock(time.Now())
			f.emitLocked(name, hypervisor.EventStopped, "saved")
		}
		f.changedLocked()
		return nil
	})
}

// Resume implements hypervisor.Hypervisor.
func (f *Fake) Resume(ctx context.Context, name string) error {
	err := f.resume(ctx, name)
	f.record(Call{Op: "resume", Name: name, Err: err})
	if err != nil {
		return fmt.Errorf("resume %q: %w", name, err)
	}
	return nil
}

func (f *Fake) resume(ctx context.Context, name string) error {
	return f.withDomain(ctx, name, func(d *domain) error {
		if d.state != hypervisor.StatePaused {
			return hypervisor.ErrNotRunning
		}
		d.state = hypervisor.StateRunning
		d.runClock(time.Now())
		f.emitLocked(name, hypervisor.EventResumed, "unpaused")
		f.changedLocked()
		return nil
	})
}

// SetGuestTime implements hypervisor.Hypervisor: it sets the guest's
// clock (see GuestClock) to the host's and is recorded as a Call with Op
// "set-time". A domain whose spec has no Agent gives ErrNoAgent, one that
// is not running ErrNotRunning.
func (f *Fake) SetGuestTime(ctx context.Context, name string) error {
	err := f.withDomain(ctx, name, func(d *domain) error {
		if d.state != hypervisor.StateRunning {
			return hypervisor.ErrNotRunning
		}
		if !d.spec.Agent {
			return hypervisor.ErrNoAgent
		}
		if f.agentLate[name] > 0 {
			f.agentLate[name]--
			return hypervisor.ErrAgentUnresponsive
		}
		d.lag = 0
		return nil
	})
	f.record(Call{Op: "set-time", Name: name, Err: err})
	if err != nil {
		return fmt.Errorf("set guest time of %q: %w", name, err)
	}
	return nil
}

// AgentLate makes the next n SetGuestTime calls of name fail with
// ErrAgentUnresponsive, as libvirt answers until it has seen a restored
// guest's agent port open.
func (f *Fake) AgentLate(name string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.agentLate[name] = n
}

// GuestClock returns what the guest of domain name would read on its
// clock now: behind the host's by the time it spent suspended or saved
// since its boot or its last SetGuestTime. ok is false for an unknown
// domain.
func (f *Fake) GuestClock(name string) (t time.Time, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.domains[name]
	if d == nil {
		return time.Time{}, false
	}
	now := time.Now()
	if !d.stoppedAt.IsZero() {
		now = d.stoppedAt
	}
	return now.Add(-d.lag), true
}

// State implements hypervisor.Hypervisor.
func (f *Fake) State(ctx context.Context, name string) (hypervisor.State, error) {
	if err := ctx.Err(); err != nil {
		return hypervisor.StateUnknown, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.domainLocked(name)
	if err != nil {
		return hypervisor.StateUnknown, fmt.Errorf("state of %q: %w", name, err)
	}
	return d.state, nil
}

// List implements hypervisor.Hypervisor: every jitsu domain the fake knows,
// in any state, never foreign ones.
func (f *Fake) List(ctx context.Context) ([]hypervisor.Domain, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.unavailable {
		return nil, fmt.Errorf("list domains: %w", hypervisor.ErrUnavailable)
	}
	out := make([]hypervisor.Domain, 0, len(f.domains))
	for name, d := range f.domains {
		out = append(out, hypervisor.Domain{Name: name, State: d.state, MAC: d.spec.NIC(), Started: d.started})
	}
	return out, nil
}

// InterfaceStats implements hypervisor.StatsReader with the counters set by
// SetStats and AddTraffic.
func (f *Fake) InterfaceStats(ctx context.Context, name string) (hypervisor.InterfaceStats, error) {
	if err := ctx.Err(); err != nil {
		return hypervisor.InterfaceStats{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.domainLocked(name)
	if err != nil {
		return hypervisor.InterfaceStats{}, fmt.Errorf("interface stats of %q: %w", name, err)
	}
	return d.stats, nil
}

// AllInterfaceStats returns the counters of every running domain, as
// the libvirt backend's bulk read does.
func (f *Fake) AllInterfaceStats(ctx context.Context) (map[string]hypervisor.InterfaceStats, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.unavailable {
		return nil, fmt.Errorf("interface stats of every domain: %w", hypervisor.ErrUnavailable)
	}
	out := make(map[string]hypervisor.InterfaceStats)
	for name, d := range f.domains {
		if d.state == hypervisor.StateRunning {
			out[name] = d.stats
		}
	}
	return out, nil
}

// DiscardSave implements hypervisor.Hypervisor: a saved domain becomes shut
// off (its next Start boots afresh); other states are left as they are.
func (f *Fake) DiscardSave(ctx context.Context, name string) error {
	err := f.discardSave(ctx, name)
	f.record(Call{Op: "discard", Name: name, Err: err})
	if err != nil {
		return fmt.Errorf("discard save of %q: %w", name, err)
	}
	return nil
}

func (f *Fake) discardSave(ctx context.Context, name string) error {
	return f.withDomain(ctx, name, func(d *domain) error {
		if d.state == hypervisor.StateSaved {
			d.state = hypervisor.StateShutoff
			d.ready = false
			f.changedLocked()
		}
		return nil
	})
}

// Events implements hypervisor.Hypervisor. The channel is closed by Close.
func (f *Fake) Events() <-chan hypervisor.Event { return f.events }

// Close implements hypervisor.Hypervisor: it stops event delivery, closes
// the Events channel and makes every later call fail with ErrUnavailable.
// Undelivered events are discarded. Close is idempotent.
func (f *Fake) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.changedLocked()
	f.mu.Unlock()
	close(f.done)
	f.pumpWG.Wait()
	return nil
}

// ---- scripting ----

// Put creates or replaces a jitsu domain in state st without emitting an
// event, e.g. to pre-populate the fake as if jitsu had been restarted.
// A running or paused domain put this way counts as ready only after
// SetReady (or with SetAutoReady).
func (f *Fake) Put(spec hypervisor.Spec, st hypervisor.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.domains[spec.Name]
	if d == nil {
		d = &domain{}
		f.domains[spec.Name] = d
	}
	d.spec = spec
	d.state = st
	if st == hypervisor.StateRunning || st == hypervisor.StatePaused {
		d.started = time.Now()
		d.ready = f.autoReady
	}
	f.changedLocked()
}

// AddForeign adds a domain that jitsu did not create: List never shows it
// and every operation on it fails with hypervisor.ErrForeign.
func (f *Fake) AddForeign(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.foreign[name] = true
	f.changedLocked()
}

// FailStart makes the next Start of name fail with err (wrapped).
func (f *Fake) FailStart(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failStart[name] = err
}

// FailStop makes the next Stop of a running or paused domain name fail
// with err (wrapped), leaving the domain as it is.
func (f *Fake) FailStop(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failStop[name] = err
}

// HangStart makes every Start of name block until the returned function is
// called or the call's context is done (then Start fails with ctx.Err()
// and changes nothing), as a hung libvirt call would.
func (f *Fake) HangStart(name string) (release func()) { return f.hangCalls(f.hang, name) }

// HangStop makes every Stop of name block until the returned function is
// called or the call's context is done (then Stop fails with ctx.Err()
// and changes nothing: the domain runs on), as a libvirt destroy,
// shutdown or save that hangs until its deadline would. WaitHanging
// counts the held Stops.
func (f *Fake) HangStop(name string) (release func()) { return f.hangCalls(f.hangStop, name) }

func (f *Fake) hangCalls(hangs map[string]chan struct{}, name string) (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	hangs[name] = ch
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			if hangs[name] == ch {
				delete(hangs, name)
			}
			f.mu.Unlock()
			close(ch)
		})
	}
}

// Reconnected emits hypervisor.EventReconnected, as a backend does after
// it (re)connects to its hypervisor.
func (f *Fake) Reconnected() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.emitLocked("", hypervisor.EventReconnected, "reconnected")
}

// Vanish removes domain name without an event, as if its stop or crash
// had been missed while the connection was down.
func (f *Fake) Vanish(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.domains, name)
	f.changedLocked()
}

// SetUnavailable makes every operation fail with hypervisor.ErrUnavailable
// while on, as if libvirtd were gone.
func (f *Fake) SetUnavailable(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unavailable = on
	f.changedLocked()
}

// Crash moves a running or paused domain to crashed, emitting EventCrashed,
// and resets its guest readiness. It reports whether the domain was running.
func (f *Fake) Crash(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.domains[name]
	if d == nil || (d.state != hypervisor.StateRunning && d.state != hypervisor.StatePaused) {
		return false
	}
	d.state = hypervisor.StateCrashed
	d.ready = false
	f.emitLocked(name, hypervisor.EventCrashed, "panicked")
	f.changedLocked()
	return true
}

// SetReady says whether the guest of domain name is ready (for WaitReady).
// Readiness is reset when the domain is destroyed, shut down or crashes.
func (f *Fake) SetReady(name string, ready bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.domains[name]
	if d == nil {
		return
	}
	d.ready = ready
	f.changedLocked()
}

// SetAutoReady makes every later boot (Start or Put of a running domain)
// ready at once.
func (f *Fake) SetAutoReady(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.autoReady = on
}

// WaitReady blocks until the guest of domain name is running and ready
// (SetReady), or ctx is done. Its signature fits a summoner probe:
// plug f.WaitReady in as the prober.
func (f *Fake) WaitReady(ctx context.Context, name string) error {
	return f.wait(ctx, func() bool {
		d := f.domains[name]
		return d != nil && d.ready && d.state == hypervisor.StateRunning
	}, func() error { return fmt.Errorf("wait for %q to be ready: %w", name, ctx.Err()) })
}

// SetStats sets domain name's interface counters.
func (f *Fake) SetStats(name string, st hypervisor.InterfaceStats) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.domains[name]; d != nil {
		d.stats = st
	}
}

// AddTraffic adds one packet of n bytes in each direction to domain name's
// counters.
func (f *Fake) AddTraffic(name string, n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.domains[name]; d != nil {
		d.stats.RxBytes += n
		d.stats.TxBytes += n
		d.stats.RxPackets++
		d.stats.TxPackets++
	}
}

// Starts returns how many times domain name was booted or restored by
// Start (resuming a paused domain does not count).
func (f *Fake) Starts(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.domains[name]; d != nil {
		return d.starts
	}
	return 0
}

// StateOf returns the domain's state without error handling: StateUnknown
// for an unknown domain.
func (f *Fake) StateOf(name string) hypervisor.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.domains[name]; d != nil {
		return d.state
	}
	return hypervisor.StateUnknown
}

// Spec returns the spec domain name was last started (or Put) with.
func (f *Fake) Spec(name string) (hypervisor.Spec, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.domains[name]; d != nil {
		return d.spec, true
	}
	return hypervisor.Spec{}, false
}

// Calls returns every Start, Prepare, Stop, Resume, DiscardSave and
// SetGuestTime call so far, in order.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// OnCall sets a hook called synchronously after every Start, Stop and
// Resume, e.g. to interleave the fake's calls with a test gate's in one log.
func (f *Fake) OnCall(hook func(Call)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = hook
}

// WaitStarts blocks until domain name has been started at least n times or
// ctx is done.
func (f *Fake) WaitStarts(ctx context.Context, name string, n int) error {
	return f.wait(ctx, func() bool {
		d := f.domains[name]
		return d != nil && d.starts >= n
	}, func() error { return fmt.Errorf("wait for %d starts of %q: %w", n, name, ctx.Err()) })
}

// WaitHanging blocks until at least n Start (or Prepare) calls of name
// are held by HangStart, or Stop calls by HangStop, at once, or ctx is
// done: the calls are in flight.
func (f *Fake) WaitHanging(ctx context.Context, name string, n int) error {
	return f.wait(ctx, func() bool { return f.hanging[name] >= n },
		func() error { return fmt.Errorf("wait for %d hung starts of %q: %w", n, name, ctx.Err()) })
}

// WaitState blocks until domain name is in state st or ctx is done.
func (f *Fake) WaitState(ctx context.Context, name string, st hypervisor.State) error {
	return f.wait(ctx, func() bool {
		d := f.domains[name]
		return d != nil && d.state == st
	}, func() error { return fmt.Errorf("wait for %q to be %s: %w", name, st, ctx.Err()) })
}

// wait blocks until cond (called with f.mu held) holds or ctx is done.
func (f *Fake) wait(ctx context.Context, cond func() bool, fail func() error) error {
	for {
		f.mu.Lock()
		ok := cond()
		ch := f.changed
		f.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fail()
		}
	}
}
