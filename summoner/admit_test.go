package summoner

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// fakeAdmitter admits the first n boots, then refuses with reason; it
// records the sources it was asked for.
type fakeAdmitter struct {
	mu      sync.Mutex
	n       int
	reason  string
	sources []netip.Addr
}

func (a *fakeAdmitter) Admit(src netip.Addr, _ string, _ time.Time) (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sources = append(a.sources, src)
	if a.n > 0 {
		a.n--
		return true, ""
	}
	return false, a.reason
}

func (a *fakeAdmitter) asked() []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]netip.Addr(nil), a.sources...)
}

// TestAdmission: admission control is asked once per boot a summon would
// start, with the query's source; a refusal returns ErrAdmission with the
// addresses, is counted by reason and boots nothing; the operator's Start
// bypasses it; a running unikernel is never asked about.
func TestAdmission(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.7")
	for _, tc := range []struct {
		name      string
		admit     int
		call      func(h *harness) ([]netip.Addr, error)
		wantErr   error
		wantBoots int
		wantSrc   netip.Addr // invalid: unknown source asked
		asked     int
	}{
		{"admitted from a source", 1, func(h *harness) ([]netip.Addr, error) { return h.s.SummonFrom(h.ctx, src, "a") }, nil, 1, src, 1},
		{"refused from a source", 0, func(h *harness) ([]netip.Addr, error) { return h.s.SummonFrom(h.ctx, src, "a") }, ErrAdmission, 0, src, 1},
		{"refused, unknown source", 0, func(h *harness) ([]netip.Addr, error) { return h.s.Summon(h.ctx, "a") }, ErrAdmission, 0, netip.Addr{}, 1},
		{"front door", 0, func(h *harness) ([]netip.Addr, error) {
			return h.s.SummonByFrom(h.ctx, src, "a", TriggerFrontDoor)
		}, ErrAdmission, 0, src, 1},
		{"operator bypasses", 0, func(h *harness) ([]netip.Addr, error) { return nil, h.s.Start(h.ctx, "a") }, nil, 1, netip.Addr{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			adm := &fakeAdmitter{n: tc.admit, reason: "boot_rate"}
			u := small("a", "10.0.0.1", 0)
			u.Triggers = append(u.Triggers, TriggerFrontDoor)
			h := newHarness(t, Options{Admit: adm}, u).run()
			addrs, err := tc.call(h)
			if !errors.Is(err, tc.wantErr) && !(err == nil && tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if errors.Is(err, ErrAdmission) && len(addrs) != 1 {
				t.Fatalf("a refusal returned addresses %v, want the unikernel's", addrs)
			}
			if tc.wantBoots > 0 {
				h.waitStarts("a", tc.wantBoots)
			}
			h.settle()
			if got := h.f.Starts("a"); got != tc.wantBoots {
				t.Fatalf("boots = %d, want %d", got, tc.wantBoots)
			}
			asked := adm.asked()
			if len(asked) != tc.asked || (tc.asked > 0 && asked[0] != tc.wantSrc) {
				t.Fatalf("admission asked for %v, want %d times for %v", asked, tc.asked, tc.wantSrc)
			}
			wantRefused := 0.0
			if tc.wantErr != nil {
				wantRefused = 1
			}
			if got := h.metric("jitsu_summoner_admission_refusals_total", "reason", "boot_rate"); got != wantRefused {
				t.Fatalf("refusals = %v, want %v", got, wantRefused)
			}
		})
	}
}

// TestAdmissionAskedOnce: admission is asked once per boot, also for a
// held packet.
func TestAdmissionAskedOnce(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.7")
	t.Run("a booting or running unikernel is not asked again", func(t *testing.T) {
		adm := &fakeAdmitter{n: 1, reason: "source_prefix"}
		h := newHarness(t, Options{Admit: adm}, small("a", "10.0.0.1", 0)).run()
		for range 3 {
			if _, err := h.s.SummonFrom(h.ctx, src, "a"); err != nil {
				t.Fatal(err)
			}
		}
		h.waitStarts("a", 1)
		h.f.SetReady("a", true)
		h.waitState("a", StateReady)
		if _, err := h.s.SummonFrom(h.ctx, src, "a"); err != nil {
			t.Fatal(err)
		}
		if n := len(adm.asked()); n != 1 {
			t.Fatalf("asked %d times, want 1", n)
		}
	})
	t.Run("a held packet from a source", func(t *testing.T) {
		adm := &fakeAdmitter{n: 0, reason: "source_prefix"}
		h := withGate(t, Options{Admit: adm}, uk("web", "10.0.0.1")).run()
		h.s.OnPacketFrom(src, web1, ProtoTCP)
		h.settle()
		if h.f.Starts("web") != 0 || len(adm.asked()) != 1 || adm.asked()[0] != src {
			t.Fatalf("starts %d, asked %v", h.f.Starts("web"), adm.asked())
		}
		if got := h.metric("jitsu_summoner_admission_refusals_total", "reason", "source_prefix"); got != 1 {
			t.Fatalf("refusals = %v, want 1", got)
		}
	})
}

// TestMinUp: however idle, a unikernel is not evicted by the budget before
// MinUp has passed since its boot started.
func TestMinUp(t *testing.T) {
	h := newHarness(t, Options{MaxRunning: 1, EvictIdle: time.Second, MinUp: 10 * time.Second},
		small("a", "10.0.0.1", 0), small("b", "10.0.0.2", 0)).run()
	h.bootReady("a")
	h.ticks(3)
	if _, err := h.s.Summon(h.ctx, "b"); !errors.Is(err, ErrBudget) {
		t.Fatalf("summon b 3s after a booted: %v, want ErrBudget (a is within min_up)", err)
	}
	h.ticks(8)
	h.summon("b")
	h.waitState("a", StateStopped)
	h.waitStarts("b", 1)
}

// TestDropResting: a suspended or saved unikernel is dropped after its
// DropAfter (destroyed, its save discarded); under memory pressure the
// least recently active suspended one is dropped at once.
func TestDropResting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   hypervisor.StopMode
		rested State
		drop   time.Duration
		low    bool
		ticks  int
		reason string
	}{
		{"suspended after drop_after", hypervisor.StopSuspend, StateSuspended, 5 * time.Second, false, 6, "drop_after"},
		{"saved after drop_after", hypervisor.StopSave, StateSaved, 5 * time.Second, false, 6, "drop_after"},
		{"suspended under memory pressure", hypervisor.StopSuspend, StateSuspended, 0, true, 1, "memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := small("a", "10.0.0.1", 0)
			u.StopMode = tc.mode
			u.DropAfter = tc.drop
			var mu sync.Mutex
			low := false
			h := newHarness(t, Options{LowMemory: func() bool { mu.Lock(); defer mu.Unlock(); return low }}, u).run()
			h.bootReady("a")
			if err := h.s.Stop(h.ctx, "a", ""); err != nil {
				t.Fatal(err)
			}
			h.waitState("a", tc.rested)
			h.ticks(1)
			if st := h.status("a").State; st != tc.rested {
				t.Fatalf("dropped too early: %v", st)
			}
			mu.Lock()
			low = tc.low
			mu.Unlock()
			h.ticks(tc.ticks)
			h.waitState("a", StateStopped)
			if h.f.StateOf("a") != hypervisor.StateShutoff {
				t.Fatalf("domain is %v after the drop, want shut off", h.f.StateOf("a"))
			}
			if got := h.metric("jitsu_summoner_rest_drops_total", "reason", tc.reason); got != 1 {
				t.Fatalf("drops{%s} = %v, want 1", tc.reason, got)
			}
		})
	}
}
