package summoner

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor/hvtest"
)

var web1 = netip.MustParseAddr("10.0.0.1")

// TestConnectionTrigger: a stopped unikernel is armed at the gate according
// to its triggers; the first packet it holds summons it, and is replayed
// once it is ready; the boot's trigger is in the status, the metrics and
// the log.
func TestConnectionTrigger(t *testing.T) {
	for _, tc := range []struct {
		name     string
		triggers []Trigger
		armed    []Proto // held while stopped
		proto    Proto   // the client's first packet
		boots    bool
	}{
		{"tcp", []Trigger{TriggerDNS, TriggerTCP}, []Proto{ProtoTCP}, ProtoTCP, true},
		{"udp", []Trigger{TriggerDNS, TriggerUDP}, []Proto{ProtoUDP}, ProtoUDP, true},
		{"tcp and udp", []Trigger{TriggerTCP, TriggerUDP}, []Proto{ProtoTCP, ProtoUDP}, ProtoUDP, true},
		{"tcp not a trigger", []Trigger{TriggerDNS, TriggerUDP}, []Proto{ProtoUDP}, ProtoTCP, false},
		{"dns only: not armed", []Trigger{TriggerDNS}, nil, ProtoTCP, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := uk("web", "10.0.0.1")
			u.Triggers = tc.triggers
			h := withGate(t, Options{}, u).run()
			if got := h.gate.holds(web1); !slices.Equal(got, tc.armed) {
				t.Fatalf("armed for %v while stopped, want %v", got, tc.armed)
			}
			held := h.gate.packet(web1, tc.proto)
			if !tc.boots {
				h.settle()
				if h.f.Starts("web") != 0 || h.status("web").State != StateStopped {
					t.Fatalf("a packet that is not a trigger (held=%v) summoned it: calls %q", held, h.calls())
				}
				return
			}
			h.waitStarts("web", 1)
			h.f.SetReady("web", true)
			h.waitState("web", StateReady)
			st := h.status("web")
			want := Trigger("tcp")
			if tc.proto == ProtoUDP {
				want = "udp"
			}
			if st.LastBoot.Trigger != want || st.LastBoot.FirstReplay.IsZero() {
				t.Fatalf("timeline %+v: want trigger %s and a replay", st.LastBoot, want)
			}
			if got := h.metric("jitsu_unikernel_summons_total", "unikernel", "web", "trigger", string(want)); got != 1 {
				t.Fatalf("summons_total{trigger=%s} = %v, want 1", want, got)
			}
			if len(h.logged("held SYNs replayed")) != 1 || len(h.logged("booting unikernel")) != 1 {
				t.Fatal("replay or trigger not logged")
			}
			if h.gate.holds(web1) != nil {
				t.Fatal("still held once ready")
			}
		})
	}
}

// TestDNSTriggerTimeline: a DNS-triggered boot without held SYNs has no
// replay in its timeline, and its trigger is dns.
func TestDNSTriggerTimeline(t *testing.T) {
	h := withGate(t, Options{}, uk("web", "10.0.0.1")).run()
	h.bootReady("web")
	if st := h.status("web"); st.LastBoot.Trigger != TriggerDNS || !st.LastBoot.FirstReplay.IsZero() {
		t.Fatalf("timeline %+v: want trigger dns, no replay", st.LastBoot)
	}
	if err := h.s.Start(h.ctx, "web"); err != nil { // ready: nothing to do
		t.Fatal(err)
	}
	if err := h.s.Stop(h.ctx, "web", ""); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Start(h.ctx, "web"); err != nil {
		t.Fatal(err)
	}
	h.waitStarts("web", 2)
	h.f.SetReady("web", true)
	h.waitState("web", StateReady)
	if st := h.status("web"); st.LastBoot.Trigger != TriggerControl {
		t.Fatalf("operator start has trigger %q", st.LastBoot.Trigger)
	}
}

// TestRearmWithoutGap: idle-out and budget eviction hold the addresses
// before the stop call, so a SYN that arrives during the stop is held and
// summons the next boot.
func TestRearmWithoutGap(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(h *harness)
	}{
		{"idle", func(h *harness) { h.ticks(10) }},
		{"budget", func(h *harness) {
			h.ticks(6)
			h.summon("other")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := uk("other", "10.0.0.2")
			other.IdleTimeout = 0
			h := withGate(t, Options{MaxRunning: 1, EvictIdle: 5 * statsEvery}, uk("web", "10.0.0.1"), other).run()
			h.bootReady("web")
			heldDuringStop := make(chan bool, 1)
			h.f.OnCall(func(c hvtest.Call) {
				h.record(c.Op + " " + c.Name + " " + string(c.Mode))
				if c.Op == "stop" && c.Name == "web" {
					heldDuringStop <- h.gate.packet(web1, ProtoTCP)
				}
			})
			tc.stop(h)
			if !<-heldDuringStop {
				t.Fatalf("a SYN during the stop was not held: calls %q", h.calls())
			}
			// web's calls only: other's actor runs beside web's
			calls := slices.DeleteFunc(h.calls(), func(c string) bool {
				return !strings.Contains(c, "web") && !strings.Contains(c, "10.0.0.1")
			})
			stop := slices.Index(calls, "stop web destroy")
			if stop < 1 || calls[stop-1] != "hold 10.0.0.1" {
				t.Fatalf("no hold right before the stop: %q", calls)
			}
			if tc.name == "idle" {
				h.waitStarts("web", 2) // the held SYN summoned the next boot
				h.f.SetReady("web", true)
				h.waitState("web", StateReady)
				if st := h.status("web"); st.LastBoot.Trigger != TriggerTCP || st.LastBoot.FirstReplay.IsZero() {
					t.Fatalf("next boot %+v: want tcp-triggered with a replay", st.LastBoot)
				}
			}
		})
	}
}

// TestRemovedUnikernelDisarmed: a unikernel removed from the config is no
// longer held at the gate; one added is armed.
func TestRemovedUnikernelDisarmed(t *testing.T) {
	h := withGate(t, Options{}, uk("a", "10.0.0.1")).run()
	if h.gate.holds(web1) == nil {
		t.Fatal("not armed")
	}
	if err := h.s.Update([]Unikernel{uk("b", "10.0.0.2")}); err != nil {
		t.Fatal(err)
	}
	h.waitCall("drop 10.0.0.1") // the removed unit's actor is not in the new table: wait for it
	h.settle()
	if h.gate.holds(web1) != nil || h.gate.holds(netip.MustParseAddr("10.0.0.2")) == nil {
		t.Fatalf("after reload: a held %v, b held %v", h.gate.holds(web1), h.gate.holds(netip.MustParseAddr("10.0.0.2")))
	}
}

// TestFailedRearmedAfterBackoff: a failed boot drops what was held; once
// the backoff is over the unikernel's address is armed again, and a
// client's next SYN summons it (without a DNS query).
func TestFailedRearmedAfterBackoff(t *testing.T) {
	h := withGate(t, Options{BackoffBase: 10 * time.Second}, uk("web", "10.0.0.1")).run()
	h.f.FailStart("web", errors.New("boom"))
	h.summon("web")
	h.waitState("web", StateFailed)
	h.settle()
	if got := h.gate.holds(web1); got != nil {
		t.Fatalf("held %v during the backoff, want nothing", got)
	}
	h.clk.Advance(11 * time.Second)
	h.settle()
	if got := h.gate.holds(web1); !slices.Equal(got, []Proto{ProtoTCP}) {
		t.Fatalf("held %v after the backoff, want tcp (armed again)", got)
	}
	h.gate.packet(web1, ProtoTCP)
	h.waitStarts("web", 1) // the first, failed, Start is not counted
	h.f.SetReady("web", true)
	h.waitState("web", StateReady)
	if st := h.status("web"); st.LastBoot.Trigger != TriggerTCP {
		t.Fatalf("second boot's trigger %s, want tcp", st.LastBoot.Trigger)
	}
}
