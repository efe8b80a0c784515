package summoner

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// countingHV counts the Start calls in flight, and the most at once.
type countingHV struct {
	hypervisor.Hypervisor
	inflight, most atomic.Int32
}

func (c *countingHV) Start(ctx context.Context, spec hypervisor.Spec) error {
	n := c.inflight.Add(1)
	defer c.inflight.Add(-1)
	for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
	}
	return c.Hypervisor.Start(ctx, spec)
}

// waitMetric waits until the gauge or counter name equals want.
func (h *harness) waitMetric(name string, want float64) {
	h.t.Helper()
	for h.metric(name) != want {
		select {
		case <-h.ctx.Done():
			h.t.Fatalf("%s = %v, want %v", name, h.metric(name), want)
		case <-time.After(time.Millisecond):
		}
	}
}

// waitLogged waits until msg was logged n times.
func (h *harness) waitLogged(msg string, n int) {
	h.t.Helper()
	for len(h.logged(msg)) < n {
		select {
		case <-h.ctx.Done():
			h.t.Fatalf("%q logged %d times, want %d", msg, len(h.logged(msg)), n)
		case <-time.After(time.Millisecond):
		}
	}
}

// startCalls returns the names of the domains the hypervisor was asked to
// start, in order.
func (h *harness) startCalls() []string {
	var out []string
	for _, c := range h.calls() {
		if name, ok := strings.CutPrefix(c, "start "); ok {
			out = append(out, name)
		}
	}
	return out
}

// queueOf summons names one after the other, each once the one before is
// in flight or queued, with every Start held; it returns the releases.
func (h *harness) queueOf(names []string, max int) map[string]func() {
	h.t.Helper()
	release := map[string]func(){}
	for i, n := range names {
		release[n] = h.f.HangStart(n)
		h.summon(n)
		if i < max {
			if err := h.f.WaitHanging(h.ctx, n, 1); err != nil {
				h.t.Fatal(err)
			}
		} else {
			h.waitMetric("jitsu_starts_queued", float64(i+1-max))
			// The gauge moves when the boot enters the queue; its
			// goroutine logs the wait a moment later.
			h.waitLogged("boot queued", i+1-max)
		}
	}
	return release
}

// TestStartQueue: with max_starting = 2 and six summons, never more than
// two creates are in flight, the others wait in FIFO order shown as
// starting (queued) without their boot timeout or create deadline
// running, and a queued boot that is stopped or removed leaves the queue.
func TestStartQueue(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e", "f"}
	var uks []Unikernel
	for i, n := range names {
		uks = append(uks, uk(n, fmt.Sprintf("10.0.0.%d", i+2)))
	}
	h := newHarness(t, Options{MaxStarting: 2, CreateTimeout: time.Hour}, uks...)
	cnt := &countingHV{Hypervisor: h.f}
	h.s.hv = cnt
	h.run()
	release := h.queueOf(names, 2)
	defer func() {
		for _, r := range release {
			r()
		}
	}()
	if n := cnt.inflight.Load(); n != 2 {
		t.Fatalf("%d Start calls in flight, want 2", n)
	}
	for _, n := range names[2:] {
		st := h.status(n)
		if st.State != StateStarting || st.LastBoot.Queued.IsZero() || !st.LastBoot.Start.IsZero() {
			t.Fatalf("%s: state %s, timeline %+v: want starting, queued, not started", n, st.State, st.LastBoot)
		}
	}
	if h.metric("jitsu_starts_in_flight") != 2 || len(h.logged("boot queued")) != 4 {
		t.Fatalf("in flight %v, %d queued logs", h.metric("jitsu_starts_in_flight"), len(h.logged("boot queued")))
	}

	// Ten minutes in the queue: no boot timeout (5s) for anyone queued.
	h.clk.Advance(10 * time.Minute)
	h.settle()
	for _, n := range names {
		if st := h.status(n); st.State != StateStarting {
			t.Fatalf("%s is %s after 10 min, want starting", n, st.State)
		}
	}

	// a ready: its slot goes to c, the first waiting.
	release["a"]()
	h.waitStarts("a", 1)
	h.f.SetReady("a", true)
	h.waitState("a", StateReady)
	if err := h.f.WaitHanging(h.ctx, "c", 1); err != nil {
		t.Fatal(err)
	}
	// Only a boot that waited says it left the queue: c, not a or b.
	if left := h.logged("boot left the start queue"); len(left) != 1 {
		t.Fatalf("%d \"left the start queue\" logs, want 1 (c's)", len(left))
	}
	// b times out (its boot timeout runs once its Start returned): d next.
	release["b"]()
	h.waitProbes("b", 1)
	h.clk.Advance(6 * time.Second)
	h.waitState("b", StateFailed)
	if err := h.f.WaitHanging(h.ctx, "d", 1); err != nil {
		t.Fatal(err)
	}
	if st := h.status("c"); st.LastBoot.Start.IsZero() || !st.LastBoot.Start.After(st.LastBoot.Queued) {
		t.Fatalf("c's timeline %+v: want started after it was queued", st.LastBoot)
	}

	// e and f queued: f stopped by the operator, e removed by a reload.
	if err := h.s.Stop(h.ctx, "f", ""); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Update(slices.DeleteFunc(slices.Clone(uks), func(u Unikernel) bool { return u.Name == "e" })); err != nil {
		t.Fatal(err)
	}
	h.waitMetric("jitsu_starts_queued", 0)
	for _, n := range []string{"c", "d"} {
		release[n]()
		h.waitStarts(n, 1)
		h.f.SetReady(n, true)
		h.waitState(n, StateReady)
	}
	h.waitMetric("jitsu_starts_in_flight", 0)
	if got := h.startCalls(); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("starts %q, want a b c d in that order (e and f left the queue)", got)
	}
	if n := cnt.most.Load(); n != 2 {
		t.Fatalf("at most %d Start calls in flight at once, want 2", n)
	}
	if st := h.status("f"); st.State != StateStopped {
		t.Fatalf("f is %s, want stopped", st.State)
	}
}

// TestStartQueueCreateDeadline: the create deadline of a queued boot
// starts when it leaves the queue, not when it was summoned.
func TestStartQueueCreateDeadline(t *testing.T) {
	h := newHarness(t, Options{MaxStarting: 1, CreateTimeout: 30 * time.Second},
		uk("a", "10.0.0.2"), uk("b", "10.0.0.3")).run()
	release := h.queueOf([]string{"a", "b"}, 1)
	defer release["a"]()
	defer release["b"]()

	h.clk.Advance(31 * time.Second) // a's create deadline
	h.waitState("a", StateFailed)
	if err := h.f.WaitHanging(h.ctx, "b", 1); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(29 * time.Second) // 60s after b's summon, 29s after it left the queue
	h.settle()
	if st := h.status("b"); st.State != StateStarting {
		t.Fatalf("b is %s 29s after it left the queue, want starting", st.State)
	}
	h.clk.Advance(2 * time.Second)
	h.waitState("b", StateFailed)
	if st := h.status("b"); !strings.Contains(st.LastError, "create timeout") {
		t.Fatalf("b's last error %q, want a create timeout", st.LastError)
	}
}

// TestStartQueueResume: a warm or suspended domain's resume takes a slot
// too: it waits behind a boot in flight.
func TestStartQueueResume(t *testing.T) {
	a, b := uk("a", "10.0.0.2"), uk("b", "10.0.0.3")
	b.StopMode = hypervisor.StopSuspend
	h := newHarness(t, Options{MaxStarting: 1, CreateTimeout: time.Hour}, a, b).run()
	h.bootReady("b")
	if err := h.s.Stop(h.ctx, "b", hypervisor.StopSuspend); err != nil {
		t.Fatal(err)
	}
	release := h.f.HangStart("a")
	defer release()
	h.summon("a")
	if err := h.f.WaitHanging(h.ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	h.summon("b")
	h.waitMetric("jitsu_starts_queued", 1)
	if slices.Contains(h.calls(), "resume b") {
		t.Fatal("b resumed while a's boot held the only slot")
	}
	release()
	h.waitStarts("a", 1)
	h.f.SetReady("a", true)
	h.waitState("a", StateReady)
	h.waitState("b", StateReady) // its guest was ready when suspended
	if st := h.status("b"); st.LastBoot.Mode != ModeResume {
		t.Fatalf("b's mode %q, want resume", st.LastBoot.Mode)
	}
}
