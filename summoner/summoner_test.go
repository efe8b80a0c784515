package summoner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/hypervisor/hvtest"
)

func TestSummonSingleFlight(t *testing.T) {
	h := newHarness(t, Options{}, uk("web", "10.0.0.1")).run()
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			addrs, err := h.s.Summon(h.ctx, "web")
			if err == nil && (len(addrs) != 1 || addrs[0].String() != "10.0.0.1") {
				err = fmt.Errorf("addrs %v", addrs)
			}
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	h.waitStarts("web", 1)
	h.f.SetReady("web", true)
	h.waitState("web", StateReady)
	h.summon("web")
	if got := h.f.Starts("web"); got != 1 {
		t.Fatalf("%d concurrent summons started %d boots, want 1", n, got)
	}
	st := h.status("web")
	if st.Boots != 1 || st.LastBoot.Start.IsZero() || st.LastBoot.Ready.IsZero() || st.LastBoot.Query.IsZero() {
		t.Fatalf("status %+v: want 1 boot with a full timeline", st)
	}
	if got := h.metric("jitsu_unikernel_boots_total", "unikernel", "web"); got != 1 {
		t.Fatalf("boots_total = %v, want 1", got)
	}
	if got := h.metric("jitsu_unikernel_boot_duration_seconds", "unikernel", "web"); got != 1 {
		t.Fatalf("boot duration observations = %v, want 1", got)
	}
	if got := h.metric("jitsu_unikernel_state", "unikernel", "web", "state", "ready"); got != 1 {
		t.Fatalf("state gauge ready = %v, want 1", got)
	}
	if got := h.metric("jitsu_unikernel_state", "unikernel", "web", "state", "stopped"); got != 0 {
		t.Fatalf("state gauge stopped = %v, want 0", got)
	}
	if len(h.logged("unikernel transition")) < 2 {
		t.Fatal("transitions not logged")
	}
}

func TestSummonErrors(t *testing.T) {
	h := newHarness(t, Options{}, uk("web", "10.0.0.1")).run()
	if _, err := h.s.Summon(h.ctx, "nope"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("unknown: %v", err)
	}
	if err := h.s.Start(h.ctx, "nope"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Start unknown: %v", err)
	}
	if err := h.s.Stop(h.ctx, "nope", ""); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Stop unknown: %v", err)
	}
	if err := h.s.Stop(h.ctx, "web", "nap"); err == nil {
		t.Fatal("Stop with a bad mode: no error")
	}
}

// TestSummonReturnsAfterHold: the DNS answer goes out only once the gate
// holds the addresses, so a client's first SYN can never beat the hold;
// concurrent Summons of the same boot wait for it too.
func TestSummonReturnsAfterHold(t *testing.T) {
	h := withGate(t, Options{}, uk("web", "10.0.0.1")).run()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.summon("web")
			if got := h.calls(); len(got) == 0 || got[0] != "hold 10.0.0.1" {
				t.Errorf("Summon returned before the hold: calls %q", got)
			}
		}()
	}
	wg.Wait()
	h.waitStarts("web", 1)
	if got := h.calls(); got[0] != "hold 10.0.0.1" || slices.Contains(got[1:], "hold 10.0.0.1") {
		t.Errorf("calls %q, want exactly one hold, first", got)
	}
}

// TestSummonWhileStopping: a query that arrives while the unikernel is
// being stopped got its addresses, so the unikernel boots again once the
// stop is done (the summon waits in the actor's queue behind the stop).
func TestSummonWhileStopping(t *testing.T) {
	h := newHarness(t, Options{}, uk("web", "10.0.0.1")).run()
	h.bootReady("web")
	finish := h.stopHeld("web", hypervisor.StopDestroy)
	h.summon("web")
	if err := finish(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	h.waitStarts("web", 2)
}

func TestGateOrder(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		h := withGate(t, Options{}, uk("web", "10.0.0.1")).run()
		h.bootReady("web")
		want := []string{"hold 10.0.0.1", "start web", "release 10.0.0.1"}
		if got := h.calls(); !slices.Equal(got, want) {
			t.Fatalf("calls %q, want %q", got, want)
		}
	})
	t.Run("start fails", func(t *testing.T) {
		h := withGate(t, Options{}, uk("web", "10.0.0.1")).run()
		h.f.FailStart("web", hypervisor.ErrUnavailable)
		h.summon("web")
		h.waitState("web", StateFailed)
		want := []string{"hold 10.0.0.1", "start web", "drop 10.0.0.1", "stop web destroy"}
		if got := h.calls(); !slices.Equal(got, want) {
			t.Fatalf("calls %q, want %q", got, want)
		}
		if st := h.status("web"); !strings.Contains(st.LastError, "unavailable") {
			t.Fatalf("LastError %q does not say why", st.LastError)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		h := withGate(t, Options{}, uk("web", "10.0.0.1")).run()
		h.summon("web")
		h.waitProbes("web", 1)
		h.clk.Advance(5 * time.Second)
		h.waitState("web", StateFailed)
		want := []string{"hold 10.0.0.1", "start web", "drop 10.0.0.1", "stop web destroy"}
		if got := h.calls(); !slices.Equal(got, want) {
			t.Fatalf("calls %q, want %q", got, want)
		}
	})
}

func TestBootTimeoutBackoff(t *testing.T) {
	base := 2 * time.Second
	h := newHarness(t, Options{BackoffBase: base, BackoffMax: time.Minute}, uk("web", "10.0.0.1")).run()
	timeout := func(boots int) {
		t.Helper()
		h.summon("web")
		h.waitStarts("web", boots)
		h.waitProbes("web", boots)
		h.clk.Advance(5 * time.Second)
		h.waitState("web", StateFailed)
		if st := h.f.StateOf("web"); st != hypervisor.StateShutoff {
			t.Fatalf("timed-out domain is %s, want destroyed", st)
		}
	}
	timeout(1)
	if _, err := h.s.Summon(h.ctx, "web"); !errors.Is(err, ErrBackoff) {
		t.Fatalf("summon during backoff: %v", err)
	}
	if got := h.metric("jitsu_unikernel_backoff_refusals_total", "unikernel", "web"); got != 1 {
		t.Fatalf("refusals = %v, want 1", got)
	}
	if len(h.logged("refusing to retry")) != 1 {
		t.Fatal("refusal not logged")
	}
	h.clk.Advance(base)
	timeout(2)
	// second failure: backoff doubled
	h.clk.Advance(base)
	if _, err := h.s.Summon(h.ctx, "web"); !errors.Is(err, ErrBackoff) {
		t.Fatalf("summon after one base of a doubled backoff: %v", err)
	}
	h.clk.Advance(base)
	h.summon("web")
	h.waitStarts("web", 3)
	h.f.SetReady("web", true)
	h.waitState("web", StateReady)
	if got := h.metric("jitsu_unikernel_failures_total", "unikernel", "web"); got != 2 {
		t.Fatalf("failures = %v, want 2", got)
	}
	if got := h.metric("jitsu_unikernel_stops_total", "unikernel", "web", "reason", "timeout"); got != 2 {
		t.Fatalf("timeout stops = %v, want 2", got)
	}
	if got := h.f.Starts("web"); got != 3 {
		t.Fatalf("starts = %d, want 3 (no boot storm)", got)
	}
}

func TestOperatorStartIgnoresBackoff(t *testing.T) {
	h := newHarness(t, Options{}, uk("web", "10.0.0.1")).run()
	h.f.FailStart("web", errors.New("no kernel"))
	h.summon("web")
	h.waitState("web", StateFailed)
	if err := h.s.Start(h.ctx, "web"); err != nil {
		t.Fatalf("operator start: %v", err)
	}
	h.waitStarts("web", 1)
	h.f.SetReady("web", true)
	h.waitState("web", StateReady)
}

func TestIdleOut(t *testing.T) {
	for _, tc := range []struct {
		mode      hypervisor.StopMode
		state     State
		domain    hypervisor.State
		startsNow int // after the next summon
		call      string
	}{
		{hypervisor.StopDestroy, StateStopped, hypervisor.StateShutoff, 2, "start web"},
		{hypervisor.StopShutdown, StateStopped, hypervisor.StateShutoff, 2, "start web"},
		{hypervisor.StopSuspend, StateSuspended, hypervisor.StatePaused, 1, "resume web"},
		{hypervisor.StopSave, StateSaved, hypervisor.StateSaved, 2, "start web"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			u := uk("web", "10.0.0.1")
			u.StopMode = tc.mode
			h := newHarness(t, Options{}, u).run()
			h.bootReady("web")
			h.ticks(9)
			if st := h.status("web").State; st != StateReady {
				t.Fatalf("stopped before the idle timeout: %s", st)
			}
			h.tick()
			h.waitState("web", tc.state)
			if got := h.f.StateOf("web"); got != tc.domain {
				t.Fatalf("domain %s, want %s", got, tc.domain)
			}
			if got := h.metric("jitsu_unikernel_stops_total", "unikernel", "web", "reason", "idle"); got != 1 {
				t.Fatalf("idle stops = %v, want 1", got)
			}
			// the next query brings it back
			h.summon("web")
			if tc.startsNow == 2 {
				h.waitStarts("web", 2)
				h.f.SetReady("web", true) // a new boot (no-op for a restored guest)
			}
			h.waitState("web", StateReady)
			if got := h.f.Starts("web"); got != tc.startsNow {
				t.Fatalf("starts = %d, want %d", got, tc.startsNow)
			}
			if calls := h.calls(); calls[len(calls)-1] != tc.call {
				t.Fatalf("last call %q, want %q (calls %q)", calls[len(calls)-1], tc.call, calls)
			}
		})
	}
}

func TestActivityKeepsAlive(t *testing.T) {
	for _, tc := range []struct {
		name  string
		touch func(h *harness)
	}{
		{"traffic", func(h *harness) { h.f.AddTraffic("web", 1500) }},
		{"dns", func(h *harness) { h.summon("web") }},
		{"synproxy", func(h *harness) { h.s.Touch(h.status("web").Addrs[0]) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{}, uk("web", "10.0.0.1")).run()
			h.bootReady("web")
			for range 30 { // three idle timeouts
				tc.touch(h)
				h.tick()
			}
			if st := h.status("web").State; st != StateReady {
				t.Fatalf("active unikernel is %s", st)
			}
			if h.f.StateOf("web") != hypervisor.StateRunning {
				t.Fatal("active domain stopped")
			}
			h.ticks(11) // now idle
			h.waitState("web", StateStopped)
		})
	}
}

// TestInboundChatterIsNotActivity: packets that only reach the guest (the
// host's multicast and neighbour chatter on the bridge) do not keep it
// alive; only what the guest sends counts as traffic.
func TestInboundChatterIsNotActivity(t *testing.T) {
	h := newHarness(t, Options{}, uk("web", "10.0.0.1")).run()
	h.bootReady("web")
	var st hypervisor.InterfaceStats
	for range 12 { // more than the idle timeout of ticks
		st.RxPackets++
		st.RxBytes += 90
		h.f.SetStats("web", st)
		h.tick()
	}
	h.waitState("web", StateStopped)
}

// small is a test unikernel that never idles out, counting mem bytes.
func small(name, addr string, mem uint64) Unikernel {
	u := uk(name, addr)
	u.IdleTimeout = 0
	u.Memory = mem
	return u
}

func TestBudget(t *testing.T) {
	t.Run("max running evicts the least recently active", func(t *testing.T) {
		h := newHarness(t, Options{MaxRunning: 2, EvictIdle: 5 * time.Second},
			small("a", "10.0.0.1", 0), small("b", "10.0.0.2", 0), small("c", "10.0.0.3", 0)).run()
		h.bootReady("a")
		h.bootReady("b")
		h.ticks(6)
		h.summon("a") // a is busy now, b is the idle one
		h.summon("c")
		h.waitState("b", StateStopped)
		h.waitStarts("c", 1)
		if h.status("a").State != StateReady {
			t.Fatal("the active unikernel was evicted")
		}
		if got := h.metric("jitsu_unikernel_stops_total", "unikernel", "b", "reason", "budget"); got != 1 {
			t.Fatalf("budget stops = %v, want 1", got)
		}
		if got := h.metric("jitsu_budget_running"); got != 2 {
			t.Fatalf("budget running = %v, want 2", got)
		}
	})
	t.Run("max running refuses when all are busy", func(t *testing.T) {
		h := newHarness(t, Options{MaxRunning: 1, EvictIdle: 5 * time.Second},
			small("a", "10.0.0.1", 0), small("b", "10.0.0.2", 0)).run()
		h.bootReady("a")
		h.ticks(4)
		if _, err := h.s.Summon(h.ctx, "b"); !errors.Is(err, ErrBudget) {
			t.Fatalf("summon b: %v, want ErrBudget", err)
		}
		h.summon("a") // keeps serving
		if h.status("a").State != StateReady || h.f.StateOf("a") != hypervisor.StateRunning || h.f.Starts("b") != 0 {
			t.Fatal("refusal disturbed the running unikernel or booted b")
		}
		if got := h.metric("jitsu_budget_refusals_total"); got != 1 {
			t.Fatalf("budget refusals = %v, want 1", got)
		}
	})
	t.Run("max booting refuses", func(t *testing.T) {
		h := newHarness(t, Options{MaxBooting: 1}, small("a", "10.0.0.1", 0), small("b", "10.0.0.2", 0)).run()
		h.summon("a")
		h.waitStarts("a", 1)
		if _, err := h.s.Summon(h.ctx, "b"); !errors.Is(err, ErrBudget) {
			t.Fatalf("summon b while a boots: %v, want ErrBudget", err)
		}
		h.f.SetReady("a", true)
		h.waitState("a", StateReady)
		h.summon("b")
		h.waitStarts("b", 1)
	})
}

func TestBudgetMemory(t *testing.T) {
	t.Run("memory evicts", func(t *testing.T) {
		h := newHarness(t, Options{MemoryBudget: 100 << 20, EvictIdle: time.Second},
			small("a", "10.0.0.1", 64<<20), small("b", "10.0.0.2", 64<<20)).run()
		h.bootReady("a")
		if got := h.metric("jitsu_budget_memory_bytes"); got != 64<<20 {
			t.Fatalf("memory = %v, want 64 MiB", got)
		}
		h.ticks(2)
		h.summon("b")
		h.waitState("a", StateStopped)
		h.waitStarts("b", 1)
	})
	t.Run("suspended ones give their memory back", func(t *testing.T) {
		a := small("a", "10.0.0.1", 64<<20)
		a.StopMode = hypervisor.StopSuspend
		h := newHarness(t, Options{MemoryBudget: 100 << 20}, a, small("b", "10.0.0.2", 64<<20)).run()
		h.bootReady("a")
		if err := h.s.Stop(h.ctx, "a", ""); err != nil {
			t.Fatal(err)
		}
		h.waitState("a", StateSuspended)
		h.summon("b")
		h.waitState("a", StateStopped)
		if h.f.StateOf("a") != hypervisor.StateShutoff {
			t.Fatal("suspended victim not destroyed")
		}
		h.waitStarts("b", 1)
	})
}

func TestCrashReboots(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "console.log")
	var lines []string
	for i := range 30 {
		lines = append(lines, fmt.Sprintf("console line %d", i))
	}
	if err := os.WriteFile(logPath, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u := uk("web", "10.0.0.1")
	u.Spec.ConsoleLog = logPath
	h := newHarness(t, Options{}, u).run()
	h.bootReady("web")
	h.f.Crash("web")
	h.waitState("web", StateStopped)
	entries := h.logged("unikernel crashed")
	if len(entries) != 1 {
		t.Fatalf("%d crash log entries, want 1", len(entries))
	}
	tail, _ := entries[0].ContextMap()["console_tail"].([]interface{})
	if len(tail) != 20 || tail[19] != "console line 29" || tail[0] != "console line 10" {
		t.Fatalf("console tail %v, want lines 10..29", tail)
	}
	if got := h.metric("jitsu_unikernel_stops_total", "unikernel", "web", "reason", "crash"); got != 1 {
		t.Fatalf("crash stops = %v", got)
	}
	h.summon("web")
	h.waitStarts("web", 2)
	h.f.SetReady("web", true)
	h.waitState("web", StateReady)
}

func TestCrashWhileBootingFails(t *testing.T) {
	h := withGate(t, Options{}, uk("web", "10.0.0.1")).run()
	h.summon("web")
	h.waitStarts("web", 1)
	h.f.Crash("web")
	h.waitState("web", StateFailed)
	if got := h.calls(); got[len(got)-1] != "drop 10.0.0.1" {
		t.Fatalf("held clients not dropped: %q", got)
	}
}

func TestAdoption(t *testing.T) {
	h := newHarness(t, Options{}, uk("run", "10.0.0.1"), uk("paused", "10.0.0.2"), uk("saved", "10.0.0.3"), uk("off", "10.0.0.4"))
	for _, d := range []struct {
		name string
		st   hypervisor.State
	}{{"run", hypervisor.StateRunning}, {"paused", hypervisor.StatePaused}, {"saved", hypervisor.StateSaved},
		{"off", hypervisor.StateShutoff}, {"orphan", hypervisor.StateRunning}} {
		h.f.Put(hypervisor.Spec{Name: d.name}, d.st)
	}
	h.f.SetReady("run", true)
	h.f.SetReady("paused", true)
	h.f.SetReady("saved", true)
	// a query that arrives before Run must not boot an adopted domain twice
	h.summon("run")
	h.run()
	h.waitState("run", StateReady)
	h.waitState("paused", StateSuspended)
	h.waitState("saved", StateSaved)
	if st := h.status("off").State; st != StateStopped {
		t.Fatalf("shut-off domain adopted as %s", st)
	}
	if h.f.StateOf("orphan") != hypervisor.StateShutoff {
		t.Fatal("domain of an unconfigured unikernel left running")
	}
	for _, c := range h.calls() {
		if strings.HasPrefix(c, "start ") {
			t.Fatalf("adoption booted something: %q", h.calls())
		}
	}
	// idle timer restarted at adoption
	h.ticks(9)
	if h.status("run").State != StateReady {
		t.Fatal("adopted unikernel stopped before its idle timeout")
	}
	h.tick()
	h.waitState("run", StateStopped)

	h.summon("paused")
	h.waitState("paused", StateReady)
	h.summon("saved")
	h.waitState("saved", StateReady)
	want := []string{"stop orphan destroy", "stop run destroy", "resume paused", "start saved"}
	if got := h.calls(); !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
}

func TestUpdate(t *testing.T) {
	h := newHarness(t, Options{}, uk("a", "10.0.0.1"), uk("b", "10.0.0.2")).run()
	h.bootReady("a")
	bad := []Unikernel{uk("x", "10.0.0.9"), uk("x", "10.0.0.8")}
	if err := h.s.Update(bad); err == nil {
		t.Fatal("duplicate names accepted")
	}
	if len(h.s.Status()) != 2 {
		t.Fatal("a failed update changed the config")
	}
	b := uk("b", "10.0.0.2")
	b.Spec.Cmdline = "new"
	if err := h.s.Update([]Unikernel{b, uk("d", "10.0.0.4")}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Summon(h.ctx, "a"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("removed unikernel summoned: %v", err)
	}
	if err := h.f.WaitState(h.ctx, "a", hypervisor.StateShutoff); err != nil {
		t.Fatalf("removed unikernel not stopped: %v", err)
	}
	h.bootReady("b")
	if spec, _ := h.f.Spec("b"); spec.Cmdline != "new" {
		t.Fatalf("changed spec not used: %q", spec.Cmdline)
	}
	h.bootReady("d")
	if got := h.metric("jitsu_unikernel_stops_total", "unikernel", "a", "reason", "reload"); got != 1 {
		t.Fatalf("reload stops = %v", got)
	}
}

func TestOperatorStop(t *testing.T) {
	h := newHarness(t, Options{}, uk("web", "10.0.0.1")).run()
	if err := h.s.Stop(h.ctx, "web", ""); err != nil {
		t.Fatalf("stop of a stopped unikernel: %v", err)
	}
	h.bootReady("web")
	if err := h.s.Stop(h.ctx, "web", hypervisor.StopSuspend); err != nil {
		t.Fatal(err)
	}
	if st := h.status("web").State; st != StateSuspended {
		t.Fatalf("state after Stop returned: %s", st)
	}
	if err := h.s.Stop(h.ctx, "web", hypervisor.StopDestroy); err != nil {
		t.Fatal(err)
	}
	if st := h.status("web").State; st != StateStopped || h.f.StateOf("web") != hypervisor.StateShutoff {
		t.Fatalf("state after destroy: %s / %s", st, h.f.StateOf("web"))
	}
	if got := h.metric("jitsu_unikernel_stops_total", "unikernel", "web", "reason", "operator"); got != 2 {
		t.Fatalf("operator stops = %v", got)
	}
}

func TestExternalStop(t *testing.T) {
	h := newHarness(t, Options{}, uk("web", "10.0.0.1")).run()
	h.bootReady("web")
	if err := h.f.Stop(h.ctx, "web", hypervisor.StopShutdown); err != nil { // e.g. virsh shutdown
		t.Fatal(err)
	}
	h.waitState("web", StateStopped)
	h.bootReady("web")
	if h.f.Starts("web") != 2 {
		t.Fatal("not rebooted")
	}
}

func TestTouchSummons(t *testing.T) {
	h := newHarness(t, Options{}, uk("web", "10.0.0.1")).run()
	h.s.Touch(h.status("web").Addrs[0])
	h.waitStarts("web", 1)
	h.s.Touch(h.status("web").Addrs[0])
	h.f.SetReady("web", true)
	h.waitState("web", StateReady)
	if h.f.Starts("web") != 1 {
		t.Fatal("second touch booted again")
	}
}

func TestNewValidates(t *testing.T) {
	f := func(mod func(*Unikernel)) []Unikernel {
		u := uk("web", "10.0.0.1")
		mod(&u)
		return []Unikernel{u}
	}
	for name, uks := range map[string][]Unikernel{
		"no name":      f(func(u *Unikernel) { u.Name = "" }),
		"no address":   f(func(u *Unikernel) { u.Addrs = nil }),
		"no port":      f(func(u *Unikernel) { u.Ready = Ready{} }),
		"bad mode":     f(func(u *Unikernel) { u.StopMode = "nap" }),
		"console":      f(func(u *Unikernel) { u.Ready = Ready{Kind: ReadyConsole, Regexp: regexp.MustCompile("x")} }),
		"unknown kind": f(func(u *Unikernel) { u.Ready.Kind = 99 }),
		"dup address":  {uk("a", "10.0.0.1"), uk("b", "10.0.0.1")},
		"dup domain": {uk("a", "10.0.0.1"), func() Unikernel {
			u := uk("b", "10.0.0.2")
			u.Spec.Name = "a"
			return u
		}()},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(Options{Hypervisor: nopHV{}}, uks); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := New(Options{}, nil); err == nil {
		t.Fatal("accepted no hypervisor")
	}
}

// nopHV is a Hypervisor for New's validation tests; it is never run.
type nopHV struct{ hypervisor.Hypervisor }

// countingStats counts the reaper's reads of the fake's interface
// counters: in one call for every domain, or one per domain.
type countingStats struct {
	f        *hvtest.Fake
	all, one atomic.Int64
}

func (c *countingStats) AllInterfaceStats(ctx context.Context) (map[string]hypervisor.InterfaceStats, error) {
	c.all.Add(1)
	return c.f.AllInterfaceStats(ctx)
}

func (c *countingStats) InterfaceStats(ctx context.Context, name string) (hypervisor.InterfaceStats, error) {
	c.one.Add(1)
	return c.f.InterfaceStats(ctx, name)
}

// TestReaperReadsAllCountersInOneCall: without a Meter, the reaper reads
// the counters of every running unikernel in one hypervisor call per
// scan, not one per unikernel, and still tells the active guest from the
// idle ones.
func TestReaperReadsAllCountersInOneCall(t *testing.T) {
	h := newHarness(t, Options{}, uk("a", "10.0.0.1"), uk("b", "10.0.0.2"), uk("c", "10.0.0.3"))
	c := &countingStats{f: h.f}
	h.s.stats, h.s.allStats = c, c
	h.run()
	for _, n := range []string{"a", "b", "c"} {
		h.bootReady(n)
	}
	before := c.all.Load()
	for range 12 { // more than the idle timeout of ticks
		h.f.AddTraffic("a", 100)
		h.tick()
	}
	if got := c.all.Load() - before; got < 12 {
		t.Errorf("%d reads of every domain's counters in 12 scans, want one per scan", got)
	}
	if got := c.one.Load(); got != 0 {
		t.Errorf("%d reads of one domain's counters, want none", got)
	}
	h.waitState("b", StateStopped)
	h.waitState("c", StateStopped)
	if st := h.status("a").State; st != StateReady {
		t.Errorf("a, whose guest sent every tick, is %s", st)
	}
}
