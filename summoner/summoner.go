// Package summoner owns the life of every unikernel, from the first DNS query
// or connection to idle-out.
//
// Each configured unikernel has one state machine (see State): a pure
// transition function decides the next state and the side effects, and one
// actor per unikernel — a goroutine that exists only while the unikernel has
// events to handle — performs them in order (actions.go: one small function
// per action): holding and releasing the gate, starting, resuming, restoring
// and stopping the domain through the hypervisor, probing readiness,
// enforcing the boot timeout and the failed-boot backoff. Hypervisor calls
// run under deadlines, and a boot's Start runs beside the actor, so that the
// boot timeout fires even while it hangs.
//
// While a unikernel is stopped, suspended or saved its addresses stay held
// ("armed") at the gate when its triggers include tcp or udp: the first
// packet summons it (OnPacket) and is replayed once it is ready.
//
// A start queue (startq.go) bounds the boots in flight, from their
// hypervisor call to ready (Options.MaxStarting); the others wait their
// turn, starting, their timeouts not yet running.
//
// A reaper goroutine stops idle unikernels (no DNS query and no client
// traffic for their idle timeout); a budget (max running, max booting,
// memory; a pure value, budget.go) evicts the least recently used idle
// unikernel to make room; a reconciler makes the summoner's view equal the
// hypervisor's on every reconnect, periodically, and whenever the outcome of
// a stop is unknown.
//
// Summon, called by the DNS server for every query of a unikernel's name,
// never waits for a boot: for a running
// unikernel it is two atomic operations and a map lookup.
package summoner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// Proto is an IP protocol number: the transport of a packet the gate holds.
// It is an alias so that a gate implements Gate without importing this
// package.
type Proto = uint8

// Protocols the gate holds.
const (
	ProtoTCP Proto = 6  // TCP SYNs
	ProtoUDP Proto = 17 // UDP datagrams
)

// Gate is what the summoner needs from the SYN proxy: hold the first
// packets to a unikernel's addresses while it is stopped or boots, replay
// them once it is ready, reset them if the boot fails. For every packet it
// holds, the gate calls Summoner.OnPacket (without holding its own locks:
// OnPacket may call Hold).
type Gate interface {
	// Hold starts holding the first packets to addrs — TCP SYNs, and UDP
	// datagrams too when protos contains ProtoUDP — and pins their
	// neighbour entries to mac, the unikernel's NIC, where held packets
	// are replayed to. Holding held addresses again keeps what is held and
	// updates mac and protos. Called before a boot, before a stop (so that
	// nothing arriving during the stop is lost) and while a unikernel is
	// stopped and armed.
	Hold(addrs []netip.Addr, mac net.HardwareAddr, protos []Proto) error
	// Release replays the packets held for addrs and stops holding them;
	// it reports how many it replayed. Called when ready.
	Release(addrs []netip.Addr) (replayed int, err error)
	// Drop answers the held TCP clients with RST, discards held datagrams
	// and stops holding. Called when the boot failed or timed out, or
	// when a unikernel is removed.
	Drop(addrs []netip.Addr) error
}

// Meter counts client traffic: for each unikernel address, a monotonic
// count of unicast packets between the guest and its (non link-local)
// clients. The reaper reads it every StatsInterval; a change is activity.
type Meter interface {
	Traffic(ctx context.Context) (map[netip.Addr]uint64, error)
}

// Placer is told each time a domain's process exists: its Start,
// Resume or Prepare call returned. guestcpu.Weigher fits (it lowers the
// QEMU's CPU weight). It must not block.
type Placer interface {
	Started(domain string)
}

// Trigger is what summoned a unikernel: the label of its boots in the
// metrics, the status and the log. A Unikernel's Triggers list those that
// may summon it; the operator (TriggerControl) always may.
type Trigger string

// Triggers.
const (
	TriggerDNS       Trigger = "dns"       // a query of one of its names
	TriggerTCP       Trigger = "tcp"       // a TCP SYN to one of its addresses
	TriggerUDP       Trigger = "udp"       // a UDP datagram to one of its addresses
	TriggerControl   Trigger = "control"   // the operator (Start)
	TriggerFrontDoor Trigger = "frontdoor" // the front door (SummonBy)
	TriggerGroup     Trigger = "group"     // summoned with another one (Unikernel.With)
)

// Start modes of a boot (BootTimeline.Mode).
const (
	ModeBoot    = "boot"    // a fresh domain booted
	ModeWarm    = "warm"    // a warm domain (created paused before its guest ran) resumed
	ModeResume  = "resume"  // a suspended domain resumed
	ModeRestore = "restore" // restored from a managed save image (stop_mode save)
	// ModeSnapshot: restored from the save file made after its first
	// boot (Unikernel.Snapshot); the file stays for the next start.
	ModeSnapshot = "snapshot"
	// ModeWarmSnapshot: a warm domain restored paused from the save file
	// (Unikernel.Warm and Snapshot) resumed: its guest continues past its
	// boot.
	ModeWarmSnapshot = "warm-snapshot"
)

// ReadyKind is the kind of a readiness probe.
type ReadyKind uint8

// Readiness probe kinds.
const (
	ReadyTCP     ReadyKind = iota + 1 // connect to Port
	ReadyConsole                      // a console line matches Regexp
	ReadyDelay                        // Delay after the start
)

// Ready says how the summoner tells that a booted unikernel serves. The
// config package owns its syntax ("tcp:80", ...); this is the typed value.
type Ready struct {
	// Kind is ReadyTCP, ReadyConsole or ReadyDelay.
	Kind ReadyKind
	// Port is the TCP port connected to, every ProbeInterval, on each
	// address, for ReadyTCP.
	Port uint16
	// Regexp is matched against each new line of Spec.ConsoleLog, for
	// ReadyConsole.
	Regexp *regexp.Regexp
	// Delay is how long after the start the unikernel is taken as ready,
	// for ReadyDelay.
	Delay time.Duration
}

// Unikernel is one configured unikernel. Every field is explicit: the
// config package owns the defaults.
type Unikernel struct {
	// Name is the unikernel's name in the config (and in Summon).
	Name string
	// Addrs are its addresses, returned by Summon and held by the gate.
	Addrs []netip.Addr
	// Spec is what the hypervisor boots; Spec.Name is the domain name
	// (Name when empty).
	Spec hypervisor.Spec
	// IdleTimeout: stopped after this long without activity; 0: never.
	IdleTimeout time.Duration
	// BootTimeout: a boot not ready this long after its domain was
	// created (its Start or Resume call returned; that call is bounded
	// by Options.CreateTimeout) is destroyed and counts as a failure
	// (required).
	BootTimeout time.Duration
	// StopMode is how it is stopped when idle (required).
	StopMode hypervisor.StopMode
	// Ready is the readiness probe (required).
	Ready Ready
	// Triggers may summon it: TriggerDNS, TriggerTCP, TriggerUDP,
	// TriggerFrontDoor (at least one). With tcp or udp it is armed at the
	// gate while stopped.
	Triggers []Trigger
	// Memory is what it counts against the memory budget; 0 means
	// Spec.MemoryBytes.
	Memory uint64
	// DropAfter: suspended or saved this long, it is dropped (destroyed,
	// its save image discarded) and boots afresh next time; 0: never.
	DropAfter time.Duration
	// Warm: while it is stopped, keep a domain created and paused before
	// its guest runs (the warm pool, within Options.WarmMax and
	// WarmMemory), so that a summon is a resume. Its StopMode must be
	// destroy or shutdown.
	Warm bool
	// With names unikernels summoned with it (TriggerGroup), one level:
	// theirs are not followed.
	With []string
	// Snapshot: after its first boot is ready, save it to a file in
	// Options.SnapshotDir and restore that file on every later cold start
	// (ModeSnapshot) while its spec and image files stay the same. Not
	// with StopMode suspend or save; its probe must work after a restore
	// (tcp or delay). Spec.Agent lets the summoner set a restored guest's
	// clock. With Warm, the warm domain is the file restored paused
	// (ModeWarmSnapshot), prepared once the file exists.
	Snapshot bool
}

// ProbeFunc replaces the readiness probers (for tests): it blocks until
// the guest of the domain is ready (nil) or ctx is done (an error).
// hvtest.Fake.WaitReady fits.
type ProbeFunc func(ctx context.Context, domain string) error

// Options configure a Summoner.
type Options struct {
	// Hypervisor runs the domains (required). Without a Meter, if it
	// implements hypervisor.StatsReader, what the guest sends counts as
	// activity.
	Hypervisor hypervisor.Hypervisor
	// Gate is the SYN proxy; nil when it is disabled.
	Gate Gate
	// Meter counts client traffic for idle-out; nil: the hypervisor's
	// interface counters.
	Meter Meter
	// Logger; nil means no logging.
	Logger *zap.Logger
	// Registerer for the metrics; nil means no registration.
	Registerer prometheus.Registerer
	// Clock; nil means the real clock.
	Clock Clock
	// Probe replaces the tcp/console/delay probers when set.
	Probe ProbeFunc

	// MaxRunning, MaxBooting and MemoryBudget bound what runs; 0 is
	// unlimited. Starting and ready unikernels count as running,
	// starting ones as booting, and starting, ready and suspended ones
	// against the memory budget.
	MaxRunning, MaxBooting int
	MemoryBudget           uint64
	// WarmMax bounds the warm domains (Unikernel.Warm) waiting at once,
	// 0: none; WarmMemory bounds their memory, 0: unlimited. Warm domains
	// count only here, not against MaxRunning or MemoryBudget.
	WarmMax    int
	WarmMemory uint64
	// MaxStarting bounds the boots in flight at once: from the
	// hypervisor call (Start, a restore, or the Resume of a warm or
	// suspended domain) until ready or given up. Further boots wait in
	// FIFO order, starting, and their create deadline and boot timeout
	// run only once they leave the queue. 0: unlimited.
	MaxStarting int
	// EvictIdle is how long a ready unikernel must have been without
	// activity before the budget may stop it to make room; default 10s.
	EvictIdle time.Duration
	// MinUp is how long a unikernel stays up after its boot started
	// before the budget may evict it, however idle; 0: no minimum.
	MinUp time.Duration
	// Placer, if set, is told of every domain started (Placer).
	Placer Placer
	// Admit, if set, is asked before each boot a summon would start
	// (admission control); nil admits every boot.
	Admit Admitter
	// LowMemory, if set, is asked on every reaper scan whether the host
	// is short of memory: if so, the least recently active suspended
	// unikernel is dropped (destroyed). It must not block.
	LowMemory func() bool

	// ProbeInterval paces the tcp and console probers; default 5ms.
	ProbeInterval time.Duration
	// ProbeMark, when non-zero, is set as SO_MARK on the tcp prober's
	// sockets, so that the SYN proxy (which lets marked SYNs through)
	// never holds the probe's own connections. Setting it needs
	// CAP_NET_ADMIN.
	ProbeMark uint32
	// BackoffBase and BackoffMax bound the retry backoff after failed
	// boots and failed reconciliations (doubling from base); defaults 1s
	// and 5min.
	BackoffBase, BackoffMax time.Duration
	// StatsInterval is how often the reaper reads the traffic counters and
	// looks for idle unikernels; default 1s.
	StatsInterval time.Duration
	// CallTimeout bounds each hypervisor call but Start, Resume, Prepare
	// (CreateTimeout) and Stop (StopTimeout); default 10s.
	CallTimeout time.Duration
	// CreateTimeout bounds the Start or Resume call of a boot (libvirt's
	// create: QEMU's start-up and libvirt's handshake, which take seconds
	// on a loaded host) and the warm pool's Prepare; a boot whose call has
	// not returned by then times out. The boot timeout (BootTimeout)
	// starts once the call returned. Default DefaultCreateTimeout.
	CreateTimeout time.Duration
	// StopTimeout bounds each Stop call, which waits for a guest's
	// shutdown; default 60s.
	StopTimeout time.Duration
	// SnapshotDir holds the save files of the unikernels with Snapshot
	// (required if there are any); SnapshotSalt is mixed into their
	// names' hash (the daemon's instance id), so that a file made by
	// another setup is never restored.
	SnapshotDir, SnapshotSalt string
	// ReconcileInterval is how often the reconciler compares the
	// summoner's view with the hypervisor's; default 10s.
	ReconcileInterval time.Duration
}

// DefaultCreateTimeout is Options.CreateTimeout's default: a boot may
// take this plus its boot timeout from the moment it leaves the start
// queue to ready (SettleBound bounds the whole wait).
const DefaultCreateTimeout = time.Minute

// Errors returned by Summon and friends; test with errors.Is.
var (
	// ErrUnknown: no unikernel of that name.
	ErrUnknown = errors.New("unknown unikernel")
	// ErrBudget: the budget is full and nothing can be stopped.
	ErrBudget = errors.New("resource budget exhausted")
	// ErrBackoff: the unikernel failed recently; retry later.
	ErrBackoff = errors.New("unikernel failed recently, backing off")
	// ErrClosed: the summoner is not running (Run returned).
	ErrClosed = errors.New("summoner stopped")
)

// BootTimeline is when the last boot was asked for, queued, started and ready,
// when the packets held for it were first replayed (zero if none was),
// what triggered it and how it started.
type BootTimeline struct {
	Query, Start, Ready, FirstReplay time.Time
	// Queued is when the boot entered the start queue (Options.MaxStarting);
	// Start, when it left it and called the hypervisor (zero while it
	// waits). Equal when a slot was free.
	Queued  time.Time
	Trigger Trigger
	// Mode is how it started: ModeBoot, ModeWarm, ModeResume,
	// ModeRestore or ModeSnapshot.
	Mode string
}

// Status is a snapshot of one unikernel.
type Status struct {
	Name string
	// State is the reported state: starting from the moment a boot is
	// requested, stopping from the moment a stop begins, any other once
	// the actions of entering it are done.
	State        State
	Addrs        []netip.Addr
	Since        time.Time // the last transition of the actor's state
	LastActivity time.Time
	// Boots counts boots, resumes and restores.
	Boots            int
	LastBootDuration time.Duration // start call to ready
	LastBoot         BootTimeline
	LastError        string
	BackoffUntil     time.Time // zero unless failed
}

// lifePhase is where the Summoner is in its life.
type lifePhase int

const (
	phaseNew     lifePhase = iota // built, Run not called: events are queued
	phaseRunning                  // Run has adopted and runs the actors
	phaseStopped                  // Run returned (or failed): nothing more runs
)

// Summoner runs the unikernels' state machines. Create it with New and
// call Run.
type Summoner struct {
	opts  Options
	hv    hypervisor.Hypervisor
	stats hypervisor.StatsReader
	gate  Gate
	log   *zap.Logger
	clock Clock
	m     *metrics

	// allStats reads every domain's counters in one call; nil: stats,
	// one call per unikernel.
	allStats allStatsReader

	cfgMu sync.Mutex // serializes Update
	units atomic.Pointer[unitMap]

	budgetMu sync.Mutex
	limits   budget
	used     claim

	lifeMu sync.RWMutex
	phase  lifePhase
	runCtx context.Context
	wg     sync.WaitGroup
	done   chan struct{} // closed when Run stops

	changedMu sync.Mutex
	changed   chan struct{}

	reconcileKick chan struct{} // a reconciliation is wanted now
	meterBusy     atomic.Bool   // a traffic read is under way
	unadopted     atomic.Bool   // Run could not list the domains yet: no boot until it has

	startq *startQueue // boots in flight (MaxStarting)

	admitRefused atomic.Int64 // boots refused by admission control
	admitLogAt   atomic.Int64 // unix ns a refusal was last logged

	running  chan struct{} // closed once Run has adopted and started
	scanHook func()        // tests: called after each reaper scan
}

// New validates the options and the unikernels and returns a Summoner.
// Nothing runs before Run.
func New(opts Options, uks []Unikernel) (*Summoner, error) {
	if opts.Hypervisor == nil {
		return nil, errors.New("new summoner: no hypervisor")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Clock == nil {
		opts.Clock = RealClock()
	}
	defDur(&opts.ProbeInterval, 5*time.Millisecond)
	defDur(&opts.BackoffBase, time.Second)
	defDur(&opts.BackoffMax, 5*time.Minute)
	defDur(&opts.StatsInterval, time.Second)
	defDur(&opts.EvictIdle, 10*time.Second)
	defDur(&opts.CallTimeout, 10*time.Second)
	defDur(&opts.CreateTimeout, DefaultCreateTimeout)
	defDur(&opts.StopTimeout, time.Minute)
	defDur(&opts.ReconcileInterval, 10*time.Second)
	if opts.MaxRunning < 0 || opts.MaxBooting < 0 || opts.WarmMax < 0 || opts.MaxStarting < 0 {
		return nil, errors.New("new summoner: negative limit")
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Summoner{
		opts:  opts,
		hv:    opts.Hypervisor,
		gate:  opts.Gate,
		log:   opts.Logger,
		clock: opts.Clock,
		m:     m,
		limits: budget{maxRunning: opts.MaxRunning, maxBooting: opts.MaxBooting, memory: opts.MemoryBudget,
			warmMax: opts.WarmMax, warmMemory: opts.WarmMemory},
		done:          make(chan struct{}),
		changed:       make(chan struct{}),
		running:       make(chan struct{}),
		reconcileKick: make(chan struct{}, 1),
	}
	s.startq = &startQueue{max: opts.MaxStarting, onChange: func(inflight, waiting int) {
		m.startsInFlight.Set(float64(inflight))
		m.startsQueued.Set(float64(waiting))
	}}
	s.stats, _ = opts.Hypervisor.(hypervisor.StatsReader)
	s.allStats, _ = opts.Hypervisor.(allStatsReader)
	cfgs, err := s.normalize(uks)
	if err != nil {
		return nil, fmt.Errorf("new summoner: %w", err)
	}
	um := &unitMap{}
	for _, c := range cfgs {
		um.add(s.newUnit(c))
	}
	s.units.Store(um)
	return s, nil
}

func defDur(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Running is closed once Run has started its loops and adopted the
// existing domains (if the hypervisor is not reachable when Run starts,
// once it is).
func (s *Summoner) Running() <-chan struct{} { return s.running }

// Run adopts the domains that already run (a restarted jitsu), arms the
// stopped unikernels at the gate, then runs the summoner until ctx is
// done: it watches the hypervisor's events, reconciles and reaps idle
// unikernels. If the hypervisor does not answer at first, the reconciler
// adopts once it does; until then boots are refused with
// hypervisor.ErrUnavailable. It returns after every goroutine of the
// summoner has stopped; it does not stop the domains. Run may be called
// once.
func (s *Summoner) Run(ctx context.Context) error {
	s.lifeMu.Lock()
	if s.phase != phaseNew {
		s.lifeMu.Unlock()
		return errors.New("summoner: Run called twice")
	}
	s.lifeMu.Unlock()

	adoptErr := s.adopt(ctx)
	if adoptErr != nil {
		// The backend connects in the background: adopt once it answers.
		s.log.Warn("hypervisor not reachable; unikernels are summoned once their domains are adopted", zap.Error(adoptErr))
		s.unadopted.Store(true)
	} else {
		s.armStopped()
	}
	s.sweepAll()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	tick, tickTimer := s.armTick()
	rtick, rtimer := s.after(s.opts.ReconcileInterval)

	s.lifeMu.Lock()
	s.phase = phaseRunning
	s.runCtx = runCtx
	for _, u := range s.units.Load().all {
		u.mu.Lock()
		if len(u.queue) > 0 && !u.draining {
			u.draining = true
			s.wg.Add(1)
			go s.drain(u)
		}
		u.mu.Unlock()
	}
	s.wg.Add(3)
	s.lifeMu.Unlock()
	go s.watchEvents(runCtx)
	go s.reap(runCtx, tick, tickTimer)
	go s.reconcileLoop(runCtx, rtick, rtimer)
	if adoptErr == nil {
		close(s.running)
		s.refill()
	} else {
		s.kickReconcile()
	}

	<-ctx.Done()
	s.shutdown()
	cancel()
	s.wg.Wait()
	for _, u := range s.units.Load().all {
		u.cancelBoot()
	}
	return nil
}

func (s *Summoner) shutdown() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.phase != phaseStopped {
		s.phase = phaseStopped
		close(s.done)
	}
}

// backoff returns the retry backoff after n consecutive failures.
func (s *Summoner) backoff(n int) time.Duration {
	d := s.opts.BackoffBase
	for i := 1; i < n && d < s.opts.BackoffMax; i++ {
		d *= 2
	}
	return min(d, s.opts.BackoffMax)
}
