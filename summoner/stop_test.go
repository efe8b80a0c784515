package summoner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// TestHungStop: while a Stop hangs (a libvirt destroy, shutdown or save
// that does not return), its unikernel shows stopping, a summon of it
// returns at once and waits (WaitReady open) until the stop ends, and other
// unikernels boot meanwhile. A stop that ends by its deadline (StopTimeout)
// with the domain still running leaves it ready: the summon is served by
// it, without a boot. A stop released in time is followed by the boot the
// summon asked for.
func TestHungStop(t *testing.T) {
	for _, tc := range []struct {
		name      string
		release   bool  // the stop returns before its deadline
		wantErr   error // of the operator's Stop
		want      State // once the summon is served
		wantStart int   // Starts of web in all
	}{
		{"deadline", false, context.DeadlineExceeded, StateReady, 1},
		{"released", true, nil, StateReady, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stopTimeout := 300 * time.Millisecond
			if tc.release {
				stopTimeout = time.Minute
			}
			h := newHarness(t, Options{StopTimeout: stopTimeout}, uk("web", "10.0.0.1"), uk("db", "10.0.0.2")).run()
			h.bootReady("web")
			release := h.f.HangStop("web")
			defer release()
			stopped := make(chan error, 1)
			go func() { stopped <- h.s.Stop(h.ctx, "web", hypervisor.StopDestroy) }()
			if err := h.f.WaitHanging(h.ctx, "web", 1); err != nil {
				t.Fatal(err)
			}
			h.summon("web") // returns at once: the actor is busy, the summon waits in its queue
			if st := h.status("web").State; st != StateStopping {
				t.Errorf("web during its stop: %s, want stopping", st)
			}
			settled := h.s.WaitReady("web")
			if settled == nil {
				t.Fatal("WaitReady(web) = nil: the summon during the stop is not waited for")
			}
			h.bootReady("db") // another unikernel's actor is not held up
			select {
			case <-settled:
				t.Fatal("web's summon settled while its stop hangs")
			default:
			}
			if tc.release {
				h.f.SetAutoReady(true)
				release()
			}
			if err := <-stopped; !errors.Is(err, tc.wantErr) {
				t.Errorf("Stop: %v, want %v", err, tc.wantErr)
			}
			select {
			case <-settled:
			case <-h.ctx.Done():
				t.Fatal("web's summon never settled after its stop ended")
			}
			if st := h.status("web").State; st != tc.want {
				t.Errorf("web after the summon: %s, want %s", st, tc.want)
			}
			if n := h.f.Starts("web"); n != tc.wantStart {
				t.Errorf("%d starts of web, want %d", n, tc.wantStart)
			}
		})
	}
}
