// Package summoner owns the life of every unikernel, from the first DNS query
// to idle-out.
//
// Each configured unikernel has one state machine (see State): a pure
// transition function decides the next state and the side effects, and one
// actor per unikernel — a goroutine that exists only while the unikernel has
// events to handle — performs them in order: holding and releasing the SYN
// proxy's gate, starting, resuming, restoring and stopping the domain through
// the hypervisor, probing readiness, enforcing the boot timeout and the
// failed-boot backoff. A reaper goroutine stops idle unikernels (no DNS query
// and no traffic for their idle timeout); a budget (max running, max booting,
// memory) evicts the least recently used idle unikernel to make room.
//
// Summon, called by the DNS server for every query of a unikernel's name,
// never waits for a boot (unless ResponseDelay applies): for a running
// unikernel it is two atomic operations and a map lookup.
package summoner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// Gate is what the summoner needs from the SYN proxy: hold the traffic of
// a unikernel while it boots, replay it once it is ready, reset it if the
// boot fails.
type Gate interface {
	// Hold starts holding SYNs to addrs; mac is the unikernel's NIC, where
	// the held SYNs are replayed to. Called before the domain starts.
	Hold(addrs []netip.Addr, mac net.HardwareAddr) error
	// Release replays the held SYNs and stops holding. Called when ready.
	Release(addrs []netip.Addr) error
	// Drop answers the held clients with RST and stops holding. Called
	// when the boot failed or timed out.
	Drop(addrs []netip.Addr) error
}

// Readiness probe kinds.
const (
	ReadyTCP     = "tcp"
	ReadyConsole = "console"
	ReadyDelay   = "delay"
)

// Ready says how the summoner tells that a booted unikernel serves.
type Ready struct {
	// Kind is ReadyTCP (the default when empty), ReadyConsole or ReadyDelay.
	Kind string
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

// String formats r as ParseReady reads it.
func (r Ready) String() string {
	switch r.Kind {
	case ReadyConsole:
		if r.Regexp != nil {
			return "console:" + r.Regexp.String()
		}
		return "console:"
	case ReadyDelay:
		return "delay:" + r.Delay.String()
	}
	return "tcp:" + strconv.Itoa(int(r.Port))
}

// ParseReady parses a readiness probe as written in the config:
// "tcp:PORT", "console:REGEX" or "delay:DURATION".
func ParseReady(s string) (Ready, error) {
	kind, arg, ok := strings.Cut(s, ":")
	if !ok {
		return Ready{}, fmt.Errorf("readiness probe %q: want tcp:PORT, console:REGEX or delay:DURATION", s)
	}
	switch kind {
	case ReadyTCP:
		p, err := strconv.ParseUint(arg, 10, 16)
		if err != nil || p == 0 {
			return Ready{}, fmt.Errorf("readiness probe %q: bad port %q", s, arg)
		}
		return Ready{Kind: ReadyTCP, Port: uint16(p)}, nil
	case ReadyConsole:
		if arg == "" {
			return Ready{}, fmt.Errorf("readiness probe %q: empty regexp", s)
		}
		re, err := regexp.Compile(arg)
		if err != nil {
			return Ready{}, fmt.Errorf("readiness probe %q: %w", s, err)
		}
		return Ready{Kind: ReadyConsole, Regexp: re}, nil
	case ReadyDelay:
		d, err := time.ParseDuration(arg)
		if err != nil || d < 0 {
			return Ready{}, fmt.Errorf("readiness probe %q: bad duration %q", s, arg)
		}
		return Ready{Kind: ReadyDelay, Delay: d}, nil
	}
	return Ready{}, fmt.Errorf("readiness probe %q: unknown kind %q (want tcp, console or delay)", s, kind)
}

// Unikernel is one configured unikernel.
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
	// BootTimeout: a boot not ready by then is destroyed and counts as a
	// failure; 0 means DefaultBootTimeout.
	BootTimeout time.Duration
	// StopMode is how it is stopped when idle; empty means destroy.
	StopMode hypervisor.StopMode
	// Ready is the readiness probe; the zero value needs a Port.
	Ready Ready
	// Memory is what it counts against the memory budget; 0 means
	// Spec.MemoryBytes.
	Memory uint64
}

// DefaultBootTimeout is the boot timeout of a Unikernel that sets none.
const DefaultBootTimeout = 30 * time.Second

// ProbeFunc replaces the readiness probers (for tests): it blocks until
// the guest of the domain is ready (nil) or ctx is done (an error).
// hvtest.Fake.WaitReady fits.
type ProbeFunc func(ctx context.Context, domain string) error

// Options configure a Summoner.
type Options struct {
	// Hypervisor runs the domains (required). If it implements
	// hypervisor.StatsReader, traffic counts as activity.
	Hypervisor hypervisor.Hypervisor
	// Gate is the SYN proxy; nil when it is disabled.
	Gate Gate
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
	// EvictIdle is how long a ready unikernel must have been without
	// activity before the budget may stop it to make room; default 10s.
	EvictIdle time.Duration

	// ResponseDelay: when Gate is nil, Summon waits until the unikernel
	// is ready, up to this long (Jitsu's response delay). 0: no wait.
	ResponseDelay time.Duration
	// ProbeInterval paces the tcp and console probers; default 5ms.
	ProbeInterval time.Duration
	// ProbeMark, when non-zero, is set as SO_MARK on the tcp prober's
	// sockets, so that the SYN proxy (which lets marked SYNs through)
	// never holds the probe's own connections. Setting it needs
	// CAP_NET_ADMIN.
	ProbeMark uint32
	// BackoffBase and BackoffMax bound the retry backoff after failed
	// boots (doubling from base); defaults 1s and 5min.
	BackoffBase, BackoffMax time.Duration
	// StatsInterval is how often the reaper reads interface counters and
	// looks for idle unikernels; default 1s.
	StatsInterval time.Duration
}

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

// BootTimeline is when the last boot was asked for, started and ready.
type BootTimeline struct {
	Query, Start, Ready time.Time
}

// Status is a snapshot of one unikernel.
type Status struct {
	Name         string
	State        State
	Addrs        []netip.Addr
	Since        time.Time // entered State
	LastActivity time.Time
	// Boots counts boots, resumes and restores.
	Boots            int
	LastBootDuration time.Duration // start call to ready
	LastBoot         BootTimeline
	LastError        string
	BackoffUntil     time.Time // zero unless failed
}

// unitMap is an immutable index of the configured unikernels, replaced by
// Update.
type unitMap struct {
	byName   map[string]*unit
	byDomain map[string]*unit
	byAddr   map[netip.Addr]*unit
	all      []*unit // by name
}

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

	cfgMu sync.Mutex // serializes Update
	units atomic.Pointer[unitMap]

	budgetMu sync.Mutex
	used     claim

	lifeMu sync.RWMutex
	phase  int // 0: new, 1: running, 2: stopped
	runCtx context.Context
	wg     sync.WaitGroup
	done   chan struct{} // closed when Run stops

	changedMu sync.Mutex
	changed   chan struct{}

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
	if opts.MaxRunning < 0 || opts.MaxBooting < 0 || opts.ResponseDelay < 0 {
		return nil, errors.New("new summoner: negative limit")
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Summoner{
		opts:    opts,
		hv:      opts.Hypervisor,
		gate:    opts.Gate,
		log:     opts.Logger,
		clock:   opts.Clock,
		m:       m,
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		running: make(chan struct{}),
	}
	s.stats, _ = opts.Hypervisor.(hypervisor.StatsReader)
	cfgs, err := normalize(uks)
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

// normalize validates uks and fills in defaults; it returns copies.
func normalize(uks []Unikernel) ([]*Unikernel, error) {
	names := map[string]bool{}
	domains := map[string]string{}
	addrs := map[netip.Addr]string{}
	out := make([]*Unikernel, 0, len(uks))
	for i := range uks {
		c := uks[i]
		c.Addrs = slices.Clone(c.Addrs)
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
		if c.IdleTimeout < 0 || c.BootTimeout < 0 {
			return nil, fmt.Errorf("unikernel %q: negative timeout", c.Name)
		}
		if c.BootTimeout == 0 {
			c.BootTimeout = DefaultBootTimeout
		}
		if c.StopMode == "" {
			c.StopMode = hypervisor.StopDestroy
		}
		if _, err := hypervisor.ParseStopMode(string(c.StopMode)); err != nil {
			return nil, fmt.Errorf("unikernel %q: %w", c.Name, err)
		}
		if c.Memory == 0 {
			c.Memory = c.Spec.MemoryBytes
		}
		switch c.Ready.Kind {
		case "", ReadyTCP:
			c.Ready.Kind = ReadyTCP
			if c.Ready.Port == 0 {
				return nil, fmt.Errorf("unikernel %q: tcp readiness probe without a port", c.Name)
			}
		case ReadyConsole:
			if c.Ready.Regexp == nil {
				return nil, fmt.Errorf("unikernel %q: console readiness probe without a regexp", c.Name)
			}
			if c.Spec.ConsoleLog == "" {
				return nil, fmt.Errorf("unikernel %q: console readiness probe needs spec.ConsoleLog", c.Name)
			}
		case ReadyDelay:
			if c.Ready.Delay < 0 {
				return nil, fmt.Errorf("unikernel %q: negative readiness delay", c.Name)
			}
		default:
			return nil, fmt.Errorf("unikernel %q: unknown readiness probe %q", c.Name, c.Ready.Kind)
		}
		out = append(out, &c)
	}
	return out, nil
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

// Running is closed once Run has adopted the existing domains and started
// its loops.
func (s *Summoner) Running() <-chan struct{} { return s.running }

// Run adopts the domains that already run (a restarted jitsu), then runs
// the summoner until ctx is done: it watches the hypervisor's events and
// reaps idle unikernels. It returns after every goroutine of the summoner
// has stopped; it does not stop the domains. Run may be called once.
func (s *Summoner) Run(ctx context.Context) error {
	s.lifeMu.Lock()
	if s.phase != 0 {
		s.lifeMu.Unlock()
		return errors.New("summoner: Run called twice")
	}
	s.lifeMu.Unlock()

	if err := s.adopt(ctx); err != nil {
		s.shutdown()
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	tick, tickTimer := s.armTick()

	s.lifeMu.Lock()
	s.phase = 1
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
	s.wg.Add(2)
	s.lifeMu.Unlock()
	go s.watchEvents(runCtx)
	go s.reap(runCtx, tick, tickTimer)
	close(s.running)

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
	if s.phase != 2 {
		s.phase = 2
		close(s.done)
	}
}

// adopt lists the hypervisor's domains: those of configured unikernels are
// adopted, the others destroyed.
func (s *Summoner) adopt(ctx context.Context) error {
	doms, err := s.hv.List(ctx)
	if err != nil {
		return fmt.Errorf("adopt running domains: %w", err)
	}
	um := s.units.Load()
	now := s.clock.Now()
	for _, d := range doms {
		u := um.byDomain[d.Name]
		if u == nil {
			if d.State == hypervisor.StateRunning || d.State == hypervisor.StatePaused {
				s.log.Info("destroying domain of an unconfigured unikernel", zap.String("domain", d.Name), zap.Stringer("state", d.State))
				if err := s.hv.Stop(ctx, d.Name, hypervisor.StopDestroy); err != nil {
					s.log.Warn("destroy unconfigured domain", zap.String("domain", d.Name), zap.Error(err))
				}
			}
			continue
		}
		var k evKind
		switch d.State {
		case hypervisor.StateRunning:
			k = evAdoptRunning
		case hypervisor.StatePaused:
			k = evAdoptPaused
		case hypervisor.StateSaved:
			k = evAdoptSaved
		default:
			continue
		}
		u.activity.Store(now.UnixNano())
		u.mu.Lock()
		u.queue = append([]event{{kind: k, reason: "adopt"}}, u.queue...)
		u.mu.Unlock()
	}
	return nil
}

// armTick arms the reaper's next tick.
func (s *Summoner) armTick() (<-chan struct{}, Timer) {
	ch := make(chan struct{})
	t := s.clock.AfterFunc(s.opts.StatsInterval, func() { close(ch) })
	return ch, t
}

// watchEvents turns the hypervisor's crash and stop events into events of
// the unikernels.
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

// reap looks for traffic and idle unikernels every StatsInterval.
func (s *Summoner) reap(ctx context.Context, tick <-chan struct{}, t Timer) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-tick:
		}
		s.scan(ctx)
		tick, t = s.armTick()
		if s.scanHook != nil {
			s.scanHook()
		}
	}
}

// scan reads the interface counters of ready unikernels (a change is
// activity) and posts idle events.
func (s *Summoner) scan(ctx context.Context) {
	now := s.clock.Now()
	for _, u := range s.units.Load().all {
		if u.State() != StateReady {
			continue
		}
		if s.stats != nil {
			st, err := s.stats.InterfaceStats(ctx, u.domain)
			if err == nil {
				// Only what the guest sends counts: the host's own
				// multicast and neighbour chatter on the bridge reaches
				// every guest and would keep all of them alive, while a
				// download, an upload (its ACKs) or a WebSocket in use
				// always makes the guest send.
				if u.statsSeen && (st.TxPackets != u.lastStats.TxPackets || st.TxBytes != u.lastStats.TxBytes) {
					u.activity.Store(now.UnixNano())
				}
				u.lastStats, u.statsSeen = st, true
			}
		}
		cfg := u.cfg.Load()
		if cfg.IdleTimeout > 0 && now.UnixNano()-u.activity.Load() >= int64(cfg.IdleTimeout) {
			s.post(u, event{kind: evIdle, reason: "idle"})
		}
	}
}

// Summon returns the addresses of the unikernel name and makes sure it
// runs: it marks DNS activity and starts a boot (or resume, or restore) if
// none is under way, without waiting for it — unless Gate is nil and
// ResponseDelay is set, then it waits until the unikernel is ready, up to
// ResponseDelay. The returned slice must not be modified.
// Errors: ErrUnknown, ErrBudget, ErrBackoff, ErrClosed.
func (s *Summoner) Summon(ctx context.Context, name string) ([]netip.Addr, error) {
	u := s.units.Load().byName[name]
	if u == nil {
		return nil, fmt.Errorf("summon %q: %w", name, ErrUnknown)
	}
	now := s.clock.Now()
	u.activity.Store(now.UnixNano())
	cfg := u.cfg.Load()
	if State(u.state.Load()) == StateReady {
		return cfg.Addrs, nil
	}
	if err := s.request(u, now, false, "summon"); err != nil {
		return nil, err
	}
	// A concurrent Summon may have started the boot: wait until its gate
	// hold is in place before the answer goes out.
	u.mu.Lock()
	held := u.holdCh
	u.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-ctx.Done():
		}
	}
	if s.gate == nil && s.opts.ResponseDelay > 0 {
		s.waitReady(ctx, u)
	}
	return cfg.Addrs, nil
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
	return u.waitCh
}

// waitReady waits until u's boot settles, ResponseDelay passes or ctx is
// done.
func (s *Summoner) waitReady(ctx context.Context, u *unit) {
	u.mu.Lock()
	ch := u.waitCh
	u.mu.Unlock()
	if ch == nil {
		return
	}
	expired := make(chan struct{})
	t := s.clock.AfterFunc(s.opts.ResponseDelay, func() { close(expired) })
	defer t.Stop()
	select {
	case <-ch:
	case <-expired:
	case <-ctx.Done():
	case <-s.done:
	}
}

// request asks u's actor to boot it, single-flight: it does nothing if a
// boot is already asked for or under way. It applies the backoff (unless
// force) and reserves the budget, evicting idle unikernels if needed.
func (s *Summoner) request(u *unit, now time.Time, force bool, reason string) error {
	u.mu.Lock()
	st := u.State()
	if u.pending || st == StateReady || st == StateStarting || u.removed {
		u.mu.Unlock()
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
	victims, err := s.reserve(u, now)
	if err != nil {
		u.mu.Unlock()
		return err
	}
	u.pending = true
	u.query = now
	if u.waitCh == nil {
		u.waitCh = make(chan struct{})
	}
	// The gate holds the addresses before Summon returns, so that no
	// client can get the DNS answer and send its SYN before the hold is
	// in place. Only from states where evSummon boots (not Stopping).
	var held chan struct{}
	if s.gate != nil && st != StateStopping {
		held = make(chan struct{})
		u.holdCh = held
		u.holdDone = true
	}
	u.mu.Unlock()
	if held != nil {
		cfg := u.cfg.Load()
		if err := s.gate.Hold(cfg.Addrs, mac(cfg)); err != nil {
			s.log.Warn("gate hold failed", zap.String("unikernel", u.name), zap.Error(err))
		}
		close(held)
	}
	for _, v := range victims {
		mode := v.cfg.Load().StopMode
		if mode == hypervisor.StopSuspend || v.State() == StateSuspended {
			mode = hypervisor.StopDestroy // a paused domain keeps its memory
		}
		s.log.Info("evicting an idle unikernel to make room", zap.String("unikernel", v.name),
			zap.String("for", u.name), zap.String("mode", string(mode)))
		s.post(v, event{kind: evStop, mode: mode, reason: "budget"})
	}
	if !s.post(u, event{kind: evSummon, reason: reason}) {
		return fmt.Errorf("summon %q: %w", u.name, ErrClosed)
	}
	return nil
}

// Touch records traffic seen for addr (e.g. a SYN held by the SYN proxy):
// it is activity for its unikernel and summons it if it is not running.
// Touch never blocks on a boot.
func (s *Summoner) Touch(addr netip.Addr) {
	u := s.units.Load().byAddr[addr]
	if u == nil {
		return
	}
	now := s.clock.Now()
	u.activity.Store(now.UnixNano())
	if st := u.State(); st == StateReady || st == StateStarting {
		return
	}
	if err := s.request(u, now, false, "traffic"); err != nil {
		s.log.Debug("touch could not summon", zap.String("unikernel", u.name), zap.Error(err))
	}
}

// Start boots the unikernel name like Summon, for the operator: it ignores
// the failure backoff and does not wait.
func (s *Summoner) Start(ctx context.Context, name string) error {
	u := s.units.Load().byName[name]
	if u == nil {
		return fmt.Errorf("start %q: %w", name, ErrUnknown)
	}
	now := s.clock.Now()
	u.activity.Store(now.UnixNano())
	return s.request(u, now, true, "operator")
}

// Stop stops the unikernel name with mode (its StopMode when empty), for
// the operator, and waits for the stop to be done. Stopping a unikernel
// that does not run is not an error.
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
	if !s.post(u, event{kind: evStop, mode: mode, reason: "operator", reply: reply}) {
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
// ctx is done.
func (s *Summoner) WaitState(ctx context.Context, name string, st State) error {
	for {
		s.changedMu.Lock()
		ch := s.changed
		s.changedMu.Unlock()
		u := s.units.Load().byName[name]
		if u == nil {
			return fmt.Errorf("wait for %q: %w", name, ErrUnknown)
		}
		if State(u.shown.Load()) == st {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for %q to be %s (is %s): %w", name, st, State(u.shown.Load()), ctx.Err())
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
// become summonable, removed ones are stopped (destroyed), changed ones
// take effect at their next boot. A unikernel whose domain name changed is
// removed and added. On error nothing changes.
func (s *Summoner) Update(uks []Unikernel) error {
	cfgs, err := normalize(uks)
	if err != nil {
		return fmt.Errorf("update unikernels: %w", err)
	}
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	old := s.units.Load()
	um := &unitMap{}
	keep := map[*unit]bool{}
	var added, changed int
	for _, c := range cfgs {
		if u := old.byName[c.Name]; u != nil && u.domain == c.Spec.Name {
			keep[u] = true
			u.cfg.Store(c)
			um.add(u)
			changed++
			continue
		}
		um.add(s.newUnit(c))
		added++
	}
	var removed []*unit
	for _, u := range old.all {
		if !keep[u] {
			removed = append(removed, u)
		}
	}
	// Removed units first lose their domain mapping, then are stopped.
	s.units.Store(um)
	for _, u := range removed {
		u.mu.Lock()
		u.removed = true
		u.mu.Unlock()
		s.post(u, event{kind: evStop, mode: hypervisor.StopDestroy, reason: "reload"})
	}
	s.log.Info("unikernels reloaded", zap.Int("added", added), zap.Int("kept", changed), zap.Int("removed", len(removed)))
	s.notifyChanged()
	return nil
}

// backoff returns the retry backoff after n consecutive failures.
func (s *Summoner) backoff(n int) time.Duration {
	d := s.opts.BackoffBase
	for i := 1; i < n && d < s.opts.BackoffMax; i++ {
		d *= 2
	}
	return min(d, s.opts.BackoffMax)
}
