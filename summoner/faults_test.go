package summoner

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/hypervisor/hvtest"
)

// TestStopUnknownIsNeverStopped: a failed stop followed by a failed state
// check leaves the unikernel unknown (counted as running), never stopped;
// once the hypervisor answers again the reconciler finds it running and
// adopts it, and the next idle-out stops it.
func TestStopUnknownIsNeverStopped(t *testing.T) {
	h := newHarness(t, Options{MaxRunning: 1}, uk("web", "10.0.0.1")).run()
	h.bootReady("web")
	h.f.FailStop("web", hypervisor.ErrUnavailable)
	h.f.OnCall(func(c hvtest.Call) {
		if c.Op == "stop" {
			h.f.SetUnavailable(true) // the state check that follows fails too
		}
	})
	if err := h.s.Stop(h.ctx, "web", ""); err == nil {
		t.Fatal("a failed stop reported no error")
	}
	if st := h.status("web").State; st != StateUnknown {
		t.Fatalf("state after a failed stop and a failed check: %s, want unknown", st)
	}
	if got := h.metric("jitsu_budget_running"); got != 1 {
		t.Fatalf("budget running = %v: an unknown unikernel must count", got)
	}
	h.f.OnCall(nil)
	// the reconciler retries with backoff while the hypervisor is away;
	// each failed attempt is counted
	for h.metric("jitsu_summoner_reconcile_errors_total") < 1 {
		select {
		case <-h.ctx.Done():
			t.Fatal("failed reconciliation not counted")
		case <-time.After(time.Millisecond):
		}
		h.clk.Advance(100 * time.Millisecond)
	}
	h.f.SetUnavailable(false)
	h.advanceUntil("web", StateReady, 20*time.Second)
	if h.f.StateOf("web") != hypervisor.StateRunning || h.f.Starts("web") != 1 {
		t.Fatal("adopted domain is not the one that kept running")
	}
}

// TestReconcile: the summoner's view follows the hypervisor's after a
// reconnect (events missed) and periodically.
func TestReconcile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prep   func(h *harness)               // before the fault
		fault  func(h *harness)               // behind the summoner's back
		notice func(h *harness)               // how the summoner learns
		want   State                          // then
		check  func(t *testing.T, h *harness) // afterwards
	}{
		{"gone while ready, on reconnect", func(h *harness) { h.bootReady("web") },
			func(h *harness) { h.f.Vanish("web") }, func(h *harness) { h.f.Reconnected() }, StateStopped,
			func(t *testing.T, h *harness) {
				if h.gate.holds(web1) == nil {
					t.Fatal("addresses not re-armed")
				}
			}},
		{"gone while ready, periodically", func(h *harness) { h.bootReady("web") },
			func(h *harness) { h.f.Vanish("web") }, func(h *harness) { h.clk.Advance(10 * time.Second) }, StateStopped, nil},
		{"running while stopped", func(*harness) {},
			func(h *harness) {
				h.f.Put(hypervisor.Spec{Name: "web"}, hypervisor.StateRunning)
				h.f.SetReady("web", true)
			},
			func(h *harness) { h.f.Reconnected() }, StateReady,
			func(t *testing.T, h *harness) {
				if h.f.Starts("web") != 0 {
					t.Fatal("booted instead of adopting")
				}
			}},
		{"save image gone", func(h *harness) {
			h.bootReady("web")
			if err := h.s.Stop(h.ctx, "web", hypervisor.StopSave); err != nil {
				h.t.Fatal(err)
			}
		}, func(h *harness) { h.f.Vanish("web") }, func(h *harness) { h.f.Reconnected() }, StateStopped, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := uk("web", "10.0.0.1")
			u.IdleTimeout = 0 // the periodic case advances the clock past any idle timeout
			h := withGate(t, Options{}, u).run()
			tc.prep(h)
			tc.fault(h)
			tc.notice(h)
			h.waitState("web", tc.want)
			if tc.check != nil {
				tc.check(t, h)
			}
			if got := h.metric("jitsu_summoner_reconcile_fixes_total", "unikernel", "web"); got != 1 {
				t.Fatalf("reconcile fixes = %v, want 1", got)
			}
		})
	}
}

// TestHungStart: a Start that hangs delays neither DNS nor other
// unikernels; the boot timeout does not run while it hangs, but the
// create deadline fires (and cancels it).
func TestHungStart(t *testing.T) {
	h := newHarness(t, Options{CreateTimeout: 20 * time.Second}, uk("web", "10.0.0.1"), uk("other", "10.0.0.2")).run()
	release := h.f.HangStart("web")
	defer release()
	h.summon("web")
	if err := h.f.WaitHanging(h.ctx, "web", 1); err != nil {
		t.Fatal(err)
	}
	h.summon("web") // DNS answers while the start hangs
	h.bootReady("other")
	h.clk.Advance(10 * time.Second) // twice the boot timeout
	h.settle()
	if st := h.status("web").State; st != StateStarting {
		t.Fatalf("%s after twice the boot timeout in a hung Start, want starting", st)
	}
	h.clk.Advance(10 * time.Second) // the create deadline
	h.waitState("web", StateFailed)
	if st := h.status("web"); st.LastError == "" || h.f.StateOf("web") == hypervisor.StateRunning {
		t.Fatalf("status %+v, domain %s: want a failed boot and no domain", st, h.f.StateOf("web"))
	}
	if got := h.metric("jitsu_unikernel_stops_total", "unikernel", "web", "reason", "timeout"); got != 1 {
		t.Fatalf("timeout stops = %v, want 1", got)
	}
}

// TestBootTimeoutAfterCreate: the boot timeout counts from the moment the
// domain exists (its Start returned), not the wait for libvirt's create
// call, which the create deadline bounds instead: a Start that takes four
// boot timeouts is followed by a ready boot, or by a boot timeout one boot
// timeout later.
func TestBootTimeoutAfterCreate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ready bool
		want  State
	}{
		{"ready after a slow create", true, StateReady},
		{"boot timeout counted from the create", false, StateFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{CreateTimeout: time.Minute}, uk("web", "10.0.0.1")).run()
			release := h.f.HangStart("web")
			defer release()
			h.summon("web")
			if err := h.f.WaitHanging(h.ctx, "web", 1); err != nil {
				t.Fatal(err)
			}
			h.clk.Advance(20 * time.Second) // four boot timeouts, within the create deadline
			release()
			h.waitProbes("web", 1)
			h.clk.Advance(4 * time.Second) // within the boot timeout, counted from the create
			h.settle()
			if st := h.status("web").State; st != StateStarting {
				t.Fatalf("%s 4s after a 20s create (boot timeout 5s), want starting", st)
			}
			if tc.ready {
				h.f.SetReady("web", true)
			} else {
				h.clk.Advance(time.Second)
			}
			h.waitState("web", tc.want)
			if n := h.metric("jitsu_unikernel_failures_total", "unikernel", "web"); tc.ready && n != 0 {
				t.Fatalf("failures = %v after a ready boot", n)
			}
		})
	}
}

// fakeMeter is a Meter with counts set by the test.
type fakeMeter struct {
	mu     sync.Mutex
	counts map[netip.Addr]uint64
	err    error
}

func (m *fakeMeter) Traffic(context.Context) (map[netip.Addr]uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps(m.counts), m.err
}

func maps(m map[netip.Addr]uint64) map[netip.Addr]uint64 {
	out := make(map[netip.Addr]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (m *fakeMeter) add(a netip.Addr, n uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts[a] += n
}

// TestMeter: with a Meter, client traffic is activity and the guest's own
// chatter (the interface counters) is not; read errors are counted.
func TestMeter(t *testing.T) {
	m := &fakeMeter{counts: map[netip.Addr]uint64{}}
	h := newHarness(t, Options{Meter: m}, uk("web", "10.0.0.1")).run()
	h.bootReady("web")
	for range 30 {
		m.add(web1, 3)
		h.tick()
	}
	if st := h.status("web").State; st != StateReady {
		t.Fatalf("unikernel with client traffic is %s", st)
	}
	m.mu.Lock()
	m.err = errors.New("nft: no such table")
	m.mu.Unlock()
	for range 11 {
		h.f.AddTraffic("web", 100) // guest chatter: ignored with a Meter
		h.tick()
	}
	h.waitState("web", StateStopped)
	if got := h.metric("jitsu_summoner_traffic_errors_total"); got < 10 {
		t.Fatalf("traffic errors = %v, want every failed read counted", got)
	}
}

// TestReloadChangedRunning: a reload that changes the address of a
// unikernel that is not stopped stops it with its stop mode; the addresses
// dropped are the ones held (the old ones, during a boot), the new ones are
// armed, and the next boot uses the new spec.
func TestReloadChangedRunning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prep    func(h *harness)
		stop    string
		dropOld bool
	}{
		{"ready", func(h *harness) { h.bootReady("web") }, "stop web shutdown", false},
		{"booting", func(h *harness) { h.summon("web"); h.waitStarts("web", 1) }, "stop web shutdown", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := uk("web", "10.0.0.1")
			u.StopMode = hypervisor.StopShutdown
			h := withGate(t, Options{}, u).run()
			tc.prep(h)
			n := uk("web", "10.0.0.9")
			n.StopMode = hypervisor.StopShutdown
			if err := h.s.Update([]Unikernel{n}); err != nil {
				t.Fatal(err)
			}
			h.waitState("web", StateStopped)
			h.settle()
			if got := h.metric("jitsu_unikernel_stops_total", "unikernel", "web", "reason", "reload"); got != 1 {
				t.Fatalf("reload stops = %v", got)
			}
			calls := h.calls()
			if !slices.Contains(calls, tc.stop) || slices.Contains(calls, "drop 10.0.0.1") != tc.dropOld {
				t.Fatalf("calls %q: want %q, old address dropped: %v", calls, tc.stop, tc.dropOld)
			}
			if h.gate.holds(web1) != nil || h.gate.holds(netip.MustParseAddr("10.0.0.9")) == nil {
				t.Fatal("old address still held or new one not armed")
			}
			if h.gate.failed != 0 {
				t.Fatalf("%d gate calls for addresses not held", h.gate.failed)
			}
			if got := h.summon("web"); got[0].String() != "10.0.0.9" {
				t.Fatalf("summon answers %v", got)
			}
			h.waitStarts("web", 2)
			if spec, _ := h.f.Spec("web"); spec.Cmdline != "ip=10.0.0.9" {
				t.Fatalf("next boot with cmdline %q", spec.Cmdline)
			}
		})
	}
}

// TestDiscardSave: a managed save image is discarded when its unikernel is
// stopped with destroy, removed from the config, or its spec changes.
func TestDiscardSave(t *testing.T) {
	for _, tc := range []struct {
		name string
		act  func(h *harness) error
	}{
		{"operator destroy", func(h *harness) error { return h.s.Stop(h.ctx, "web", hypervisor.StopDestroy) }},
		{"removed", func(h *harness) error { return h.s.Update([]Unikernel{uk("other", "10.0.0.2")}) }},
		{"spec changed", func(h *harness) error {
			n := uk("web", "10.0.0.1")
			n.StopMode = hypervisor.StopSave
			n.Spec.MemoryBytes *= 2
			return h.s.Update([]Unikernel{n})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := uk("web", "10.0.0.1")
			u.StopMode = hypervisor.StopSave
			h := newHarness(t, Options{}, u).run()
			h.bootReady("web")
			if err := h.s.Stop(h.ctx, "web", ""); err != nil {
				t.Fatal(err)
			}
			if h.f.StateOf("web") != hypervisor.StateSaved {
				t.Fatal("not saved")
			}
			if err := tc.act(h); err != nil {
				t.Fatal(err)
			}
			h.waitCall("discard web")
			if err := h.f.WaitState(h.ctx, "web", hypervisor.StateShutoff); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSummonWhileUnknown: a summon that comes while the outcome of a stop
// is unknown is served once the reconciler has settled the state.
func TestSummonWhileUnknown(t *testing.T) {
	h := newHarness(t, Options{}, uk("web", "10.0.0.1")).run()
	h.bootReady("web")
	h.f.FailStop("web", hypervisor.ErrUnavailable)
	h.f.OnCall(func(c hvtest.Call) {
		if c.Op == "stop" {
			h.f.SetUnavailable(true)
		}
	})
	if err := h.s.Stop(h.ctx, "web", ""); err == nil {
		t.Fatal("a failed stop reported no error")
	}
	h.f.OnCall(nil)
	h.summon("web")
	h.settle()
	if st := h.status("web").State; st != StateUnknown {
		t.Fatalf("state %s, want unknown", st)
	}
	h.f.SetUnavailable(false)
	h.f.Vanish("web") // it did stop after all
	h.advanceUntil("web", StateStarting, 20*time.Second)
	h.waitStarts("web", 1) // a new domain record: Vanish forgot the old one
	h.f.SetReady("web", true)
	h.waitState("web", StateReady)
	if st := h.status("web"); st.Boots != 2 || st.LastBoot.Trigger != TriggerDNS {
		t.Fatalf("status %+v: want a second, dns-triggered boot", st)
	}
}

// TestLateAdoption: when the hypervisor does not answer as Run starts (the
// backend connects in the background), boots are refused and nothing is
// armed until the reconciler has adopted what runs.
func TestLateAdoption(t *testing.T) {
	h := withGate(t, Options{}, uk("run", "10.0.0.1"), uk("off", "10.0.0.2"))
	h.f.Put(hypervisor.Spec{Name: "run"}, hypervisor.StateRunning)
	h.f.SetReady("run", true)
	h.f.SetUnavailable(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for h.metric("jitsu_summoner_reconcile_errors_total") < 1 { // the first try failed
		h.clk.Advance(time.Second)
		time.Sleep(time.Millisecond)
	}
	if _, err := h.s.Summon(h.ctx, "off"); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Fatalf("summon before adoption: %v, want ErrUnavailable", err)
	}
	if h.gate.holds(netip.MustParseAddr("10.0.0.1")) != nil || h.gate.holds(netip.MustParseAddr("10.0.0.2")) != nil {
		t.Fatal("armed before adoption")
	}
	h.f.SetUnavailable(false)
	for adopted := false; !adopted; {
		h.clk.Advance(time.Second)
		select {
		case <-h.s.Running():
			adopted = true
		case <-time.After(10 * time.Millisecond):
		case <-h.ctx.Done():
			t.Fatal("never adopted")
		}
	}
	h.waitState("run", StateReady)
	if h.gate.holds(netip.MustParseAddr("10.0.0.2")) == nil {
		t.Fatal("stopped unikernel not armed after adoption")
	}
	if h.f.Starts("run") != 0 {
		t.Fatal("booted a running domain instead of adopting it")
	}
	h.summon("off")
	h.waitStarts("off", 1)
}
