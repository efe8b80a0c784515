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
