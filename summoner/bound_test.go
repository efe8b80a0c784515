package summoner

import (
	"testing"
	"time"
)

// TestSettleBound: the bound adds a stop under way, the start queue ahead
// (MaxStarting at a time, as many boots as the unikernels, MaxBooting and
// MaxRunning allow), the unikernel's own create deadline and boot timeout
// (twice for a snapshot unikernel) and the destroy of a failed boot.
func TestSettleBound(t *testing.T) {
	const (
		create = time.Minute
		stop   = 40 * time.Second
		call   = 10 * time.Second
		slack  = stop + 2*call
	)
	a, b, c := uk("a", "10.0.0.1"), uk("b", "10.0.0.2"), snapUK("c", "10.0.0.3")
	a.BootTimeout, b.BootTimeout, c.BootTimeout = 30*time.Second, 10*time.Second, 20*time.Second
	hold := create + 30*time.Second // a slot: the create deadline and the longest boot timeout
	for _, tc := range []struct {
		name string
		opts Options
		uk   string
		want time.Duration
	}{
		{"no queue", Options{}, "b", slack + create + 10*time.Second},
		{"one slot, two ahead", Options{MaxStarting: 1}, "b", slack + 2*hold + create + 10*time.Second},
		{"two slots, two ahead", Options{MaxStarting: 2}, "a", slack + hold + create + 30*time.Second},
		{"three slots", Options{MaxStarting: 3}, "a", slack + create + 30*time.Second},
		{"max_booting 2", Options{MaxStarting: 1, MaxBooting: 2}, "b", slack + hold + create + 10*time.Second},
		{"max_running 1", Options{MaxStarting: 1, MaxRunning: 1, MaxBooting: 3}, "b", slack + create + 10*time.Second},
		{"snapshot: queued and booted twice", Options{MaxStarting: 1}, "c", slack + 2*(2*hold+create+20*time.Second)},
		{"unknown", Options{}, "nope", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.CreateTimeout, opts.StopTimeout, opts.CallTimeout = create, stop, call
			opts.SnapshotDir = t.TempDir()
			h := newHarness(t, opts, a, b, c)
			if got := h.s.SettleBound(tc.uk); got != tc.want {
				t.Errorf("SettleBound(%q) = %v, want %v", tc.uk, got, tc.want)
			}
		})
	}
}

// TestQueuedBootOutlastsItsDeadlines: a boot waits in the start queue
// longer than its create deadline and boot timeout together, and WaitReady
// (what the front door and the DNS response delay wait on) stays open all
// along: it closes when the boot is ready, within SettleBound.
func TestQueuedBootOutlastsItsDeadlines(t *testing.T) {
	a, b := uk("a", "10.0.0.2"), uk("b", "10.0.0.3")
	a.BootTimeout = time.Hour
	h := newHarness(t, Options{MaxStarting: 1, CreateTimeout: 30 * time.Second}, a, b).run()
	h.summon("a")
	h.waitProbes("a", 1) // a holds the only slot, its guest not ready
	h.summon("b")
	h.waitMetric("jitsu_starts_queued", 1)
	settled := h.s.WaitReady("b")
	if settled == nil {
		t.Fatal("WaitReady(b) = nil while b is queued")
	}
	queued := 2 * (30*time.Second + b.BootTimeout) // twice b's create deadline and boot timeout
	h.clk.Advance(queued)
	h.settle()
	select {
	case <-settled:
		t.Fatalf("b's boot settled while it was queued (%s)", h.status("b").State)
	default:
	}
	if st := h.status("b").State; st != StateStarting {
		t.Fatalf("b is %s after %v in the queue, want starting", st, queued)
	}
	if bound := h.s.SettleBound("b"); bound <= queued {
		t.Fatalf("SettleBound(b) = %v, not above the %v it waited", bound, queued)
	}
	h.f.SetAutoReady(true)
	h.f.SetReady("a", true)
	h.waitState("a", StateReady)
	h.waitState("b", StateReady)
	select {
	case <-settled:
	case <-h.ctx.Done():
		t.Fatal("WaitReady(b) not closed once b is ready")
	}
}
