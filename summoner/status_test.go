package summoner

import (
	"context"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// TestStatusShowsStopping: while a stop is under way (a shutdown may take
// the hypervisor's shutdown_timeout), Status and WaitState say stopping,
// not ready; once it is done, stopped.
func TestStatusShowsStopping(t *testing.T) {
	h := newHarness(t, Options{}, uk("web", "10.0.0.1")).run()
	h.bootReady("web")
	finish := h.stopHeld("web", hypervisor.StopShutdown)
	if st := h.status("web").State; st != StateStopping {
		t.Errorf("status during the stop: %s, want stopping", st)
	}
	ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
	err := h.s.WaitState(ctx, "web", StateStopping)
	cancel()
	if err != nil {
		t.Errorf("WaitState(stopping) during the stop: %v", err)
	}
	if err := finish(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st := h.status("web").State; st != StateStopped {
		t.Errorf("status after the stop: %s, want stopped", st)
	}
}

// TestStatusShowsStarting: Status and WaitState say starting from the
// moment a unikernel is summoned: while its Start (libvirt's create, up
// to seconds under load) is in flight, and while the summon waits in the
// actor's queue behind the warm pool's prepare of its domain.
func TestStatusShowsStarting(t *testing.T) {
	t.Run("start in flight", func(t *testing.T) {
		h := newHarness(t, Options{}, uk("web", "10.0.0.1")).run()
		release := h.f.HangStart("web")
		defer release()
		h.summon("web")
		if err := h.f.WaitHanging(h.ctx, "web", 1); err != nil {
			t.Fatal(err)
		}
		if st := h.status("web").State; st != StateStarting {
			t.Errorf("status while Start is in flight: %s, want starting", st)
		}
		h.waitState("web", StateStarting)
		release()
		h.waitStarts("web", 1)
		h.f.SetReady("web", true)
		h.waitState("web", StateReady)
	})
	t.Run("summon queued behind a prepare", func(t *testing.T) {
		h := newHarness(t, Options{WarmMax: 1}, warmUK("web", "10.0.0.1"))
		release := h.f.HangStart("web") // holds the warm pool's Prepare
		defer release()
		h.run()
		if err := h.f.WaitHanging(h.ctx, "web", 1); err != nil {
			t.Fatal(err)
		}
		if st := h.status("web").State; st != StateStopped {
			t.Fatalf("status while preparing: %s, want stopped", st)
		}
		h.summon("web") // queued: the actor waits for the Prepare
		if st := h.status("web").State; st != StateStarting {
			t.Errorf("status of a summoned unikernel while its prepare runs: %s, want starting", st)
		}
		h.waitState("web", StateStarting)
		release()
		if err := h.f.WaitState(h.ctx, "web", hypervisor.StateRunning); err != nil {
			t.Fatal(err)
		}
		h.f.SetReady("web", true)
		h.waitState("web", StateReady)
		if got := h.status("web").LastBoot.Mode; got != ModeWarm {
			t.Errorf("start mode %q, want %q (the prepared domain resumed)", got, ModeWarm)
		}
	})
}
