package summoner

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/hypervisor/hvtest"
	"github.com/jitsu-unikernel/jitsu/internal/clocktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness runs a Summoner over hvtest with a fake clock.
type harness struct {
	t     *testing.T
	ctx   context.Context
	f     *hvtest.Fake
	clk   *clocktest.FakeClock
	s     *Summoner
	opts  Options
	logs  *observer.ObservedLogs
	reg   *prometheus.Registry
	scans chan struct{}
	gate  *fakeGate // withGate only

	mu     sync.Mutex
	seq    []string       // gate and hypervisor calls, in order
	probes map[string]int // probes begun, by domain
}

const statsEvery = time.Second

// newHarness builds (but does not run) a summoner over a fresh fake.
// opts may set budget options and Gate (use h.gate()).
func newHarness(t *testing.T, opts Options, uks ...Unikernel) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	f := hvtest.New()
	t.Cleanup(func() { _ = f.Close() })
	core, logs := observer.New(zapcore.DebugLevel)
	h := &harness{
		t: t, ctx: ctx, f: f, logs: logs,
		clk:    clocktest.NewFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)),
		reg:    prometheus.NewRegistry(),
		scans:  make(chan struct{}, 1<<16),
		probes: map[string]int{},
	}
	f.OnCall(func(c hvtest.Call) {
		s := c.Op + " " + c.Name
		if c.Mode != "" {
			s += " " + string(c.Mode)
		}
		h.record(s)
	})
	opts.Hypervisor = f
	opts.Clock = h.clk
	opts.Logger = zap.New(core)
	opts.Registerer = h.reg
	opts.Probe = func(ctx context.Context, name string) error {
		h.mu.Lock()
		h.probes[name]++
		h.mu.Unlock()
		return f.WaitReady(ctx, name)
	}
	opts.StatsInterval = statsEvery
	h.opts = opts
	s, err := New(opts, uks)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.scanHook = func() { h.scans <- struct{}{} }
	h.s = s
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range logs.All() {
				t.Logf("%s %s %v", e.Time.Format("15:04:05.000"), e.Message, e.ContextMap())
			}
			t.Logf("calls: %q", h.calls())
		}
	})
	return h
}

// run runs the summoner until the test ends.
func (h *harness) run() *harness {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.s.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-h.s.Running():
	case err := <-done:
		h.t.Fatalf("Run returned early: %v", err)
	case <-h.ctx.Done():
		h.t.Fatal("Run did not start")
	}
	return h
}

func (h *harness) record(s string) {
	h.mu.Lock()
	h.seq = append(h.seq, s)
	h.mu.Unlock()
}

func (h *harness) calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seq...)
}

// advanceUntil advances the clock a second at a time, up to max, until
// name is in state st: for what runs on its own timers (the reconciler's
// backoff) that the test cannot wait for otherwise.
func (h *harness) advanceUntil(name string, st State, max time.Duration) {
	h.t.Helper()
	for d := time.Duration(0); d <= max; d += time.Second {
		ctx, cancel := context.WithTimeout(h.ctx, 50*time.Millisecond)
		err := h.s.WaitState(ctx, name, st)
		cancel()
		if err == nil {
			return
		}
		h.clk.Advance(time.Second)
	}
	h.waitState(name, st)
}

// waitCall waits until call has been recorded (a gate or hypervisor call
// made by an actor the test cannot otherwise wait for).
func (h *harness) waitCall(call string) {
	h.t.Helper()
	for !slices.Contains(h.calls(), call) {
		select {
		case <-h.ctx.Done():
			h.t.Fatalf("no call %q: %q", call, h.calls())
		case <-time.After(time.Millisecond):
		}
	}
}

// waitProbes waits until n probes of domain name have begun: the boot
// timeout of the nth boot is armed (it is armed once the domain exists,
// beside the actor), so that the test may advance the clock past it.
func (h *harness) waitProbes(name string, n int) {
	h.t.Helper()
	for {
		h.mu.Lock()
		got := h.probes[name]
		h.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-h.ctx.Done():
			h.t.Fatalf("%d probes of %q, want %d", got, name, n)
		case <-time.After(time.Millisecond):
		}
	}
}

// tick advances the clock by one reaper interval and waits for the scan.
func (h *harness) tick() {
	h.t.Helper()
	h.clk.Advance(statsEvery)
	select {
	case <-h.scans:
	case <-h.ctx.Done():
		h.t.Fatal("no reaper scan after a tick")
	}
	h.settle()
}

// settle waits until no actor has events left to handle, e.g. the idle
// events of a scan.
func (h *harness) settle() {
	h.t.Helper()
	for {
		h.s.changedMu.Lock()
		ch := h.s.changed
		h.s.changedMu.Unlock()
		if h.s.actorsIdle() {
			return
		}
		select {
		case <-ch:
		case <-h.ctx.Done():
			h.t.Fatal("actors never settled")
		}
	}
}

func (h *harness) ticks(n int) {
	h.t.Helper()
	for range n {
		h.tick()
	}
}

func (h *harness) summon(name string) []netip.Addr {
	h.t.Helper()
	addrs, err := h.s.Summon(h.ctx, name)
	if err != nil {
		h.t.Fatalf("Summon(%q): %v", name, err)
	}
	return addrs
}

func (h *harness) waitState(name string, st State) {
	h.t.Helper()
	if err := h.s.WaitState(h.ctx, name, st); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) waitStarts(name string, n int) {
	h.t.Helper()
	if err := h.f.WaitStarts(h.ctx, name, n); err != nil {
		h.t.Fatal(err)
	}
}

// bootReady summons name and makes its guest ready.
func (h *harness) bootReady(name string) {
	h.t.Helper()
	n := h.f.Starts(name)
	h.summon(name)
	h.waitStarts(name, n+1)
	h.f.SetReady(name, true)
	h.waitState(name, StateReady)
}

// stopHeld starts a stop of name with mode that the fake hypervisor holds
// until finish is called; stopHeld returns once the hypervisor's stop has
// begun. finish releases it and returns Stop's error.
func (h *harness) stopHeld(name string, mode hypervisor.StopMode) (finish func() error) {
	h.t.Helper()
	stopping, release := make(chan struct{}), make(chan struct{})
	h.f.OnCall(func(c hvtest.Call) {
		if c.Op == "stop" {
			close(stopping)
			<-release
		}
	})
	done := make(chan error, 1)
	go func() { done <- h.s.Stop(h.ctx, name, mode) }()
	<-stopping
	return func() error {
		close(release)
		return <-done
	}
}

func (h *harness) status(name string) Status {
	h.t.Helper()
	for _, st := range h.s.Status() {
		if st.Name == name {
			return st
		}
	}
	h.t.Fatalf("no status for %q", name)
	return Status{}
}

// metric returns the value of a counter or gauge with the given labels
// (0 if absent).
func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matchLabels(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount())
				}
			}
		}
	}
	return 0
}

func matchLabels(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == kv[i] && lp.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// logged returns the log entries whose message contains msg.
func (h *harness) logged(msg string) []observer.LoggedEntry {
	return h.logs.FilterMessageSnippet(msg).All()
}

// uk returns a test unikernel: tcp:80, 64 MiB, idle 10s, boot timeout 5s.
func uk(name, addr string) Unikernel {
	return Unikernel{
		Name:        name,
		Addrs:       []netip.Addr{netip.MustParseAddr(addr)},
		Spec:        hypervisor.Spec{Name: name, MemoryBytes: 64 << 20, Cmdline: "ip=" + addr},
		IdleTimeout: 10 * time.Second,
		BootTimeout: 5 * time.Second,
		StopMode:    hypervisor.StopDestroy,
		Ready:       Ready{Kind: ReadyTCP, Port: 80},
		Triggers:    []Trigger{TriggerDNS, TriggerTCP},
	}
}

// fakeGate is an in-memory gate: it records its calls in the harness's
// call sequence, holds the packets sent to held addresses (see packet) and
// calls the summoner back for each, as the SYN proxy does.
type fakeGate struct {
	h *harness

	mu     sync.Mutex
	held   map[netip.Addr][]Proto
	queued map[netip.Addr]int
	failed int // Release and Drop calls for addresses not held
}

func newFakeGate() *fakeGate {
	return &fakeGate{held: map[netip.Addr][]Proto{}, queued: map[netip.Addr]int{}}
}

func (g *fakeGate) Hold(addrs []netip.Addr, _ net.HardwareAddr, protos []Proto) error {
	g.h.record("hold " + joinAddrs(addrs))
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range addrs {
		g.held[a] = slices.Clone(protos)
	}
	return nil
}

func (g *fakeGate) Release(addrs []netip.Addr) (int, error) {
	g.h.record("release " + joinAddrs(addrs))
	return g.finish(addrs), nil
}

func (g *fakeGate) Drop(addrs []netip.Addr) error {
	g.h.record("drop " + joinAddrs(addrs))
	g.finish(addrs)
	return nil
}

func (g *fakeGate) finish(addrs []netip.Addr) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, a := range addrs {
		if _, ok := g.held[a]; !ok {
			g.failed++
		}
		n += g.queued[a]
		delete(g.held, a)
		delete(g.queued, a)
	}
	return n
}

// packet sends a client's first packet of proto to addr: the gate holds
// it (and calls OnPacket) if it holds addr for proto. It reports whether
// it was held.
func (g *fakeGate) packet(addr netip.Addr, proto Proto) bool {
	g.mu.Lock()
	held := slices.Contains(g.held[addr], proto)
	if held {
		g.queued[addr]++
	}
	g.mu.Unlock()
	if held {
		g.h.s.OnPacket(addr, proto)
	}
	return held
}

// holds returns the protocols held for addr (nil: not held).
func (g *fakeGate) holds(addr netip.Addr) []Proto {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held[addr]
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// withGate builds a harness whose summoner uses a fake gate (h.gate).
func withGate(t *testing.T, opts Options, uks ...Unikernel) *harness {
	t.Helper()
	g := newFakeGate()
	opts.Gate = g
	h := newHarness(t, opts, uks...)
	g.h = h
	h.gate = g
	return h
}
