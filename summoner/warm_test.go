package summoner

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// warmUK is uk with Warm set.
func warmUK(name, addr string) Unikernel {
	u := uk(name, addr)
	u.Warm = true
	return u
}

// summonReady summons name, waits for its domain to run (booted or
// resumed), makes its guest ready and waits for ready.
func (h *harness) summonReady(name string) {
	h.t.Helper()
	h.summon(name)
	if err := h.f.WaitState(h.ctx, name, hypervisor.StateRunning); err != nil {
		h.t.Fatal(err)
	}
	h.f.SetReady(name, true)
	h.waitState(name, StateReady)
}

// countCalls counts the recorded calls equal to call.
func (h *harness) countCalls(call string) int {
	n := 0
	for _, c := range h.calls() {
		if c == call {
			n++
		}
	}
	return n
}

// TestWarmPoolUse: a warm unikernel is prepared at start; a summon resumes
// the paused domain (start mode warm, no boot); the freed slot goes to the
// next warm unikernel (refill after use); a stop prepares it again
// (refill after stop) once the budget has room.
func TestWarmPoolUse(t *testing.T) {
	h := withGate(t, Options{WarmMax: 1}, warmUK("a", "10.0.0.1"), warmUK("b", "10.0.0.2")).run()
	h.waitState("a", StateWarm)
	if st := h.f.StateOf("a"); st != hypervisor.StatePaused {
		t.Fatalf("domain a is %s, want paused", st)
	}
	h.settle()
	if st := h.status("b").State; st != StateStopped {
		t.Fatalf("b is %s with warm_max 1, want stopped", st)
	}
	// The warm unikernel stays armed at the gate like a stopped one.
	if p := h.gate.holds(netip.MustParseAddr("10.0.0.1")); !slices.Contains(p, ProtoTCP) {
		t.Fatalf("gate holds %v for warm a, want tcp", p)
	}

	// A SYN summons it: a resume of the prepared domain, not a create.
	h.gate.packet(netip.MustParseAddr("10.0.0.1"), ProtoTCP)
	h.waitState("a", StateStarting)
	h.f.SetReady("a", true)
	h.waitState("a", StateReady)
	if got := h.status("a").LastBoot.Mode; got != ModeWarm {
		t.Errorf("a's start mode %q, want %q", got, ModeWarm)
	}
	if n := h.countCalls("start a"); n != 0 {
		t.Errorf("a was started %d times (create), want a resume only: %q", n, h.calls())
	}
	if h.countCalls("resume a") != 1 || h.f.Starts("a") != 1 {
		t.Errorf("want one resume and one domain creation of a, got %q, %d creations", h.calls(), h.f.Starts("a"))
	}

	// Refill after use: the slot a freed goes to b.
	h.waitState("b", StateWarm)
	if st := h.f.StateOf("b"); st != hypervisor.StatePaused {
		t.Fatalf("domain b is %s, want paused", st)
	}

	// Refill after stop: a stopped while b holds the only slot stays
	// stopped; once b is used, a is prepared again.
	if err := h.s.Stop(h.ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	h.waitState("a", StateStopped)
	h.settle()
	if st := h.status("a").State; st != StateStopped {
		t.Fatalf("a is %s with the pool full, want stopped", st)
	}
	h.summonReady("b")
	if got := h.status("b").LastBoot.Mode; got != ModeWarm {
		t.Errorf("b's start mode %q, want %q", got, ModeWarm)
	}
	h.waitState("a", StateWarm)
	if n := h.countCalls("prepare a"); n != 2 {
		t.Errorf("a prepared %d times, want 2: %q", n, h.calls())
	}
	if got := h.metric("jitsu_unikernel_state", "unikernel", "a", "state", "warm"); got != 1 {
		t.Errorf("state metric of a warm = %v, want 1", got)
	}
}

// TestWarmPoolRefillAfterStop: a single warm unikernel goes back to the
// pool every time it stops, and a cold summon without the pool boots.
func TestWarmPoolRefillAfterStop(t *testing.T) {
	h := newHarness(t, Options{WarmMax: 2}, warmUK("a", "10.0.0.1")).run()
	for i := 1; i <= 3; i++ {
		h.waitState("a", StateWarm)
		h.summonReady("a")
		if got := h.status("a").LastBoot.Mode; got != ModeWarm {
			t.Fatalf("boot %d: start mode %q, want %q", i, got, ModeWarm)
		}
		h.clk.Advance(11 * time.Second) // idle
		h.tick()
		h.waitState("a", StateWarm)
	}
	if n := h.countCalls("prepare a"); n != 4 {
		t.Errorf("prepared %d times, want 4 (start, then after each of 3 stops): %q", n, h.calls())
	}
	if got := h.metric("jitsu_unikernel_prepares_total", "unikernel", "a", "result", "ok"); got != 4 {
		t.Errorf("prepares_total{ok} = %v, want 4", got)
	}
}

// TestWarmPoolBudget: warm domains count against warm_max and
// warm_memory, never against max_running or memory; the pool is filled
// in order of recent activity.
func TestWarmPoolBudget(t *testing.T) {
	h := newHarness(t, Options{WarmMax: 2, WarmMemory: 100 << 20, MaxRunning: 1, MemoryBudget: 64 << 20},
		warmUK("x", "10.0.0.1"), warmUK("y", "10.0.0.2"), warmUK("z", "10.0.0.3"), uk("cold", "10.0.0.9")).run()
	h.waitState("x", StateWarm)
	h.settle()
	// 100 MiB holds one 64 MiB warm domain.
	for _, n := range []string{"y", "z"} {
		if st := h.status(n).State; st != StateStopped {
			t.Fatalf("%s is %s, want stopped (warm_memory full)", n, st)
		}
	}
	if w, m := h.metric("jitsu_budget_warm"), h.metric("jitsu_budget_warm_memory_bytes"); w != 1 || m != 64<<20 {
		t.Errorf("warm budget used: %v domains, %v bytes; want 1, 64MiB", w, m)
	}
	if r, m := h.metric("jitsu_budget_running"), h.metric("jitsu_budget_memory_bytes"); r != 0 || m != 0 {
		t.Errorf("running budget used by warm domains: %v running, %v bytes; want 0", r, m)
	}
	// The warm domain leaves room for a cold unikernel under max_running 1.
	h.bootReady("cold")
	if err := h.s.Stop(h.ctx, "cold", ""); err != nil {
		t.Fatal(err)
	}

	// y and z are used (z last), then stopped; x's slot, once x is used,
	// goes to z, the more recently active.
	h.bootReady("y")
	if err := h.s.Stop(h.ctx, "y", ""); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(time.Second)
	h.bootReady("z")
	if err := h.s.Stop(h.ctx, "z", ""); err != nil {
		t.Fatal(err)
	}
	h.settle()
	h.clk.Advance(time.Second)
	h.summonReady("x")
	h.waitState("z", StateWarm)
	h.settle()
	if st := h.status("y").State; st != StateStopped {
		t.Errorf("y is %s, want stopped: z was more recently active", st)
	}
	if w := h.metric("jitsu_budget_warm"); w != 1 {
		t.Errorf("warm domains counted: %v, want 1", w)
	}
}

// TestWarmPoolReload: a reload that changes a warm unikernel's spec
// destroys the warm domain and prepares one with the new spec; one that
// turns warm off destroys it for good.
func TestWarmPoolReload(t *testing.T) {
	a := warmUK("a", "10.0.0.1")
	h := newHarness(t, Options{WarmMax: 1}, a).run()
	h.waitState("a", StateWarm)
	a.Spec.Cmdline = "ip=10.0.0.1 new"
	if err := h.s.Update([]Unikernel{a}); err != nil {
		t.Fatal(err)
	}
	h.waitCall("stop a destroy")
	h.waitState("a", StateWarm)
	h.settle()
	if n := h.countCalls("prepare a"); n != 2 {
		t.Fatalf("prepared %d times, want 2: %q", n, h.calls())
	}
	if spec, _ := h.f.Spec("a"); spec.Cmdline != a.Spec.Cmdline {
		t.Errorf("warm domain's cmdline %q, want the new %q", spec.Cmdline, a.Spec.Cmdline)
	}
	a.Warm = false
	if err := h.s.Update([]Unikernel{a}); err != nil {
		t.Fatal(err)
	}
	h.waitState("a", StateStopped)
	h.settle()
	if n := h.countCalls("stop a destroy"); n != 2 || h.f.StateOf("a") == hypervisor.StatePaused {
		t.Errorf("warm off: %d destroys, domain %s; want 2, not paused", n, h.f.StateOf("a"))
	}
	if w := h.metric("jitsu_budget_warm"); w != 0 {
		t.Errorf("warm domains counted: %v, want 0", w)
	}
}

// TestWarmPoolPrepareFails: a failed prepare leaves the unikernel stopped
// (and bootable) and is retried after a backoff.
func TestWarmPoolPrepareFails(t *testing.T) {
	h := newHarness(t, Options{WarmMax: 1}, warmUK("a", "10.0.0.1"))
	h.f.FailStart("a", errors.New("no QEMU"))
	h.run()
	h.waitCall("prepare a")
	h.waitState("a", StateStopped)
	h.settle()
	if got := h.metric("jitsu_unikernel_prepares_total", "unikernel", "a", "result", "error"); got != 1 {
		t.Errorf("prepares_total{error} = %v, want 1", got)
	}
	h.bootReady("a")
	if got := h.status("a").LastBoot.Mode; got != ModeBoot {
		t.Errorf("start mode %q, want %q", got, ModeBoot)
	}
}

// TestWarmAdopt: a restarted jitsu takes the paused domain of a warm
// unikernel as its warm domain (no new prepare).
func TestWarmAdopt(t *testing.T) {
	a := warmUK("a", "10.0.0.1")
	h := newHarness(t, Options{WarmMax: 1}, a)
	h.f.Put(a.Spec, hypervisor.StatePaused)
	h.run()
	h.waitState("a", StateWarm)
	h.settle()
	if n := h.countCalls("prepare a"); n != 0 {
		t.Errorf("prepared %d times, want 0 (adopted): %q", n, h.calls())
	}
	if w := h.metric("jitsu_budget_warm"); w != 1 {
		t.Errorf("warm domains counted: %v, want 1", w)
	}
}

// TestSummonGroup: summoning a unikernel summons its group (trigger
// group), one level only, each within the budget.
func TestSummonGroup(t *testing.T) {
	p := uk("p", "10.0.0.1")
	p.With = []string{"q", "r"}
	q := uk("q", "10.0.0.2")
	q.With = []string{"s"}
	h := newHarness(t, Options{MaxRunning: 2}, p, q, uk("r", "10.0.0.3"), uk("s", "10.0.0.4")).run()
	h.summon("p")
	h.waitStarts("p", 1)
	h.waitStarts("q", 1)
	h.settle()
	if got := h.status("q").LastBoot.Trigger; got != TriggerGroup {
		t.Errorf("q's trigger %q, want %q", got, TriggerGroup)
	}
	if got := h.metric("jitsu_unikernel_summons_total", "unikernel", "q", "trigger", "group"); got != 1 {
		t.Errorf("summons_total{q,group} = %v, want 1", got)
	}
	// max_running 2: r does not fit (nothing idle to evict); s is q's
	// group, never followed.
	for _, n := range []string{"r", "s"} {
		if st := h.status(n).State; st != StateStopped {
			t.Errorf("%s is %s, want stopped", n, st)
		}
	}
	if len(h.logged("group summon refused")) != 1 {
		t.Errorf("want one refused group summon logged (r, budget), got %d", len(h.logged("group summon refused")))
	}
	// A member summoned on its own does not summon its group's owner.
	h.f.SetReady("p", true)
	h.f.SetReady("q", true)
	h.waitState("q", StateReady)
	if st := h.status("s").State; st != StateStopped {
		t.Errorf("s is %s, want stopped", st)
	}
}

// TestSummonGroupValidation: With must name other configured unikernels.
func TestSummonGroupValidation(t *testing.T) {
	for _, with := range [][]string{{"nope"}, {"p"}} {
		p := uk("p", "10.0.0.1")
		p.With = with
		if _, err := New(Options{Hypervisor: nil}, []Unikernel{p}); err == nil {
			t.Fatalf("New accepted with = %q", with)
		}
		if _, err := normalize([]Unikernel{p, uk("q", "10.0.0.2")}); err == nil {
			t.Errorf("normalize accepted with = %q", with)
		}
	}
	w := warmUK("w", "10.0.0.1")
	w.StopMode = hypervisor.StopSuspend
	if _, err := normalize([]Unikernel{w}); err == nil {
		t.Error("normalize accepted a warm unikernel with stop mode suspend")
	}
}
