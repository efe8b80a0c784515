package summoner

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// unitMap is an immutable index of the configured unikernels, replaced by
// Update.
type unitMap struct {
	byName   map[string]*unit
	byDomain map[string]*unit
	byAddr   map[netip.Addr]*unit
	all      []*unit // by name
}

func (um *unitMap) add(u *unit) {
	if um.byName == nil {
		um.byName = map[string]*unit{}
		um.byDomain = map[string]*unit{}
		um.byAddr = map[netip.Addr]*unit{}
	}
	um.byName[u.name] = u
	um.byDomain[u.domain] = u
	for _, a := range u.cfg.Load().Addrs {
		um.byAddr[a] = u
	}
	um.all = append(um.all, u)
}

// unit is one unikernel's record.
type unit struct {
	name   string
	domain string
	cfg    atomic.Pointer[Unikernel]

	state        atomic.Int32  // the live state, set before a transition's actions
	shown        atomic.Int32  // the state once its actions are done, starting and stopping at once (see reported)
	epoch        atomic.Uint64 // twice the transitions, odd during one: tells stale reconciliations
	activity     atomic.Int64  // unix ns of the last DNS query or traffic
	backoffUntil atomic.Int64  // unix ns
	startCalls   atomic.Int32  // Start/Resume calls under way
	upSince      atomic.Int64  // unix ns its current boot started (MinUp)

	mu       sync.Mutex // guards the fields below
	queue    []event
	draining bool
	pending  bool          // a boot was requested and its evSummon not handled yet
	waitCh   chan struct{} // closed when a requested boot settles
	removed  bool
	query    time.Time
	trigger  Trigger // of the requested boot
	deferred Trigger // a summon that came while the state could not boot; retried once it can
	since    time.Time
	boots    int
	lastDur  time.Duration
	timeline BootTimeline
	lastErr  string

	// what the gate holds for this unit
	holdMu sync.Mutex
	held   *holding

	// budget (guarded by Summoner.budgetMu)
	claim    claim
	evicting bool

	// owned by the actor
	gen         uint64
	probeCancel context.CancelFunc
	startCancel context.CancelFunc
	started     chan struct{} // closed when the current boot's Start/Resume call returned; nil: none
	ticket      *startTicket  // the current boot's place or slot in the start queue; nil: none
	failures    int
	bootStart   time.Time
	consoleOff  int64
	warmFails   int    // failed prepares in a row
	snapPath    string // the save file of the current cold start (start = snapshot)
	snapRestore bool   // the current cold start restores snapPath
	snapSave    bool   // the current boot makes snapPath once ready
	snapBroken  string // a save file that failed to restore right after its save: not made again (u.mu)

	warming   bool         // an evPrepare is posted (u.mu)
	warmRetry atomic.Int64 // unix ns before which the pool does not prepare it again

	// owned by the reaper
	lastStats hypervisor.InterfaceStats
	statsSeen bool
	lastCount uint64
	countSeen bool
}

func (s *Summoner) newUnit(c *Unikernel) *unit {
	u := &unit{name: c.Name, domain: c.Spec.Name, since: s.clock.Now()}
	u.cfg.Store(c)
	s.m.state.WithLabelValues(u.name, StateStopped.String()).Set(1)
	return u
}

// State returns the unit's state.
func (u *unit) State() State { return State(u.state.Load()) }

// reportedLocked is the state Status and WaitState report (u.mu held):
// the shown state, but starting from the moment a boot is requested,
// while the summon waits in the actor's queue (behind a prepare of the
// warm pool, say).
func (u *unit) reportedLocked() State {
	st := State(u.shown.Load())
	if u.pending && (resting(st) || st == StateFailed) {
		return StateStarting
	}
	return st
}

// reported is reportedLocked for a caller that does not hold u.mu. A
// unikernel shown ready (the front door asks on every connection) takes
// no lock.
func (u *unit) reported() State {
	if st := State(u.shown.Load()); !resting(st) && st != StateFailed {
		return st
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.reportedLocked()
}

func (u *unit) status() Status {
	cfg := u.cfg.Load()
	u.mu.Lock()
	defer u.mu.Unlock()
	st := Status{
		Name:             u.name,
		State:            u.reportedLocked(),
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

// cancelBoot stops the boot timeout, the probe and a Start under way,
// and gives back the boot's start slot (or place in the queue);
// actor only.
func (u *unit) cancelBoot() {
	if u.probeCancel != nil {
		u.probeCancel()
		u.probeCancel = nil
	}
	if u.startCancel != nil {
		u.startCancel()
		u.startCancel = nil
	}
	if u.ticket != nil {
		u.ticket.leave() // its slot, or its place in the queue
		u.ticket = nil
	}
	u.started = nil
}

// has reports whether t may summon the unikernel.
func (c *Unikernel) has(t Trigger) bool { return slices.Contains(c.Triggers, t) }

// armProtos are the protocols held while the unikernel is stopped: its
// connection triggers. None: it is not armed.
func (c *Unikernel) armProtos() []Proto {
	var p []Proto
	if c.has(TriggerTCP) {
		p = append(p, ProtoTCP)
	}
	if c.has(TriggerUDP) {
		p = append(p, ProtoUDP)
	}
	return p
}

// bootProtos are the protocols held while it boots: SYNs always, and
// datagrams when udp is a trigger.
func (c *Unikernel) bootProtos() []Proto {
	if c.has(TriggerUDP) {
		return []Proto{ProtoTCP, ProtoUDP}
	}
	return []Proto{ProtoTCP}
}

// changed reports whether a reload from c to n needs a fresh boot: the
// addresses, the MAC, the image or the resources changed.
func (c *Unikernel) changed(n *Unikernel) bool {
	a, b := c.Spec, n.Spec
	return !slices.Equal(c.Addrs, n.Addrs) || a.Name != b.Name || a.Kernel != b.Kernel || a.Initrd != b.Initrd ||
		a.Cmdline != b.Cmdline || !slices.Equal(a.Disks, b.Disks) || a.MemoryBytes != b.MemoryBytes ||
		a.VCPUs != b.VCPUs || a.Bridge != b.Bridge || a.MAC.String() != b.MAC.String() || a.DomainType != b.DomainType
}

var configurableTriggers = []Trigger{TriggerDNS, TriggerTCP, TriggerUDP, TriggerFrontDoor}

// normalize validates uks; it returns copies, with Spec.Name and Memory
// filled in.
func normalize(uks []Unikernel) ([]*Unikernel, error) {
	names := map[string]bool{}
	domains := map[string]string{}
	addrs := map[netip.Addr]string{}
	out := make([]*Unikernel, 0, len(uks))
	for i := range uks {
		c := uks[i]
		c.Addrs = slices.Clone(c.Addrs)
		c.Triggers = slices.Clone(c.Triggers)
		c.With = slices.Clone(c.With)
		if c.Name == "" {
			return nil, fmt.Errorf("unikernel #%d: no name", i+1)
		}
		if names[c.Name] {
			return nil, fmt.Errorf("unikernel %q: duplicate name", c.Name)
		}
		names[c.Name] = true
		if c.Spec.Name == "" {
			c.Spec.Name = c.Name
		}
		if other, dup := domains[c.Spec.Name]; dup {
			return nil, fmt.Errorf("unikernel %q: domain name %q already used by %q", c.Name, c.Spec.Name, other)
		}
		domains[c.Spec.Name] = c.Name
		if len(c.Addrs) == 0 {
			return nil, fmt.Errorf("unikernel %q: no address", c.Name)
		}
		for _, a := range c.Addrs {
			if !a.IsValid() {
				return nil, fmt.Errorf("unikernel %q: invalid address", c.Name)
			}
			if other, dup := addrs[a]; dup {
				return nil, fmt.Errorf("unikernel %q: address %s already used by %q", c.Name, a, other)
			}
			addrs[a] = c.Name
		}
		if c.Memory == 0 {
			c.Memory = c.Spec.MemoryBytes
		}
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("unikernel %q: %w", c.Name, err)
		}
		out = append(out, &c)
	}
	for _, c := range out {
		for _, w := range c.With {
			if !names[w] || w == c.Name {
				return nil, fmt.Errorf("unikernel %q: with %q: not another configured unikernel", c.Name, w)
			}
		}
	}
	return out, nil
}

// check validates the timeouts, the stop mode, the probe and the triggers.
func (c *Unikernel) check() error {
	if c.IdleTimeout < 0 || c.BootTimeout <= 0 {
		return fmt.Errorf("idle timeout %s, boot timeout %s: want >= 0 and > 0", c.IdleTimeout, c.BootTimeout)
	}
	if _, err := hypervisor.ParseStopMode(string(c.StopMode)); err != nil {
		return err
	}
	if c.Warm && (c.StopMode == hypervisor.StopSuspend || c.StopMode == hypervisor.StopSave) {
		return fmt.Errorf("warm with stop mode %s (want destroy or shutdown)", c.StopMode)
	}
	if c.Snapshot && (c.StopMode == hypervisor.StopSuspend || c.StopMode == hypervisor.StopSave) {
		return fmt.Errorf("snapshot with stop mode %s (want destroy or shutdown)", c.StopMode)
	}
	if len(c.Triggers) == 0 {
		return fmt.Errorf("no trigger (want some of %q)", configurableTriggers)
	}
	for _, t := range c.Triggers {
		if !slices.Contains(configurableTriggers, t) {
			return fmt.Errorf("unknown trigger %q (want some of %q)", t, configurableTriggers)
		}
	}
	switch c.Ready.Kind {
	case ReadyTCP:
		if c.Ready.Port == 0 {
			return fmt.Errorf("tcp readiness probe without a port")
		}
	case ReadyConsole:
		if c.Ready.Regexp == nil {
			return fmt.Errorf("console readiness probe without a regexp")
		}
		if c.Spec.ConsoleLog == "" {
			return fmt.Errorf("console readiness probe needs spec.ConsoleLog")
		}
	case ReadyDelay:
		if c.Ready.Delay < 0 {
			return fmt.Errorf("negative readiness delay")
		}
	default:
		return fmt.Errorf("unknown readiness probe kind %d", c.Ready.Kind)
	}
	return nil
}
