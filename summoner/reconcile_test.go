package summoner

import (
	"testing"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// TestReconcileEvent checks, for every believed state and every domain
// state, which event brings them in line.
func TestReconcileEvent(t *testing.T) {
	const none = evKind(255)
	type dom = struct {
		st    hypervisor.State
		found bool
	}
	running, paused, saved := dom{hypervisor.StateRunning, true}, dom{hypervisor.StatePaused, true}, dom{hypervisor.StateSaved, true}
	off, crashed, gone := dom{hypervisor.StateShutoff, true}, dom{hypervisor.StateCrashed, true}, dom{hypervisor.StateUnknown, false}
	doms := []dom{running, paused, saved, off, crashed, gone}
	want := map[State][]evKind{ // in the order of doms
		StateStopped:   {evAdoptRunning, evAdoptPaused, evAdoptSaved, none, none, none},
		StateStarting:  {none, none, none, none, none, none},
		StateReady:     {none, none, evDomainStopped, evDomainStopped, evDomainStopped, evDomainStopped},
		StateStopping:  {none, none, none, none, none, none},
		StateSuspended: {evAdoptRunning, none, evDomainStopped, evDomainStopped, evDomainStopped, evDomainStopped},
		StateSaved:     {evAdoptRunning, evAdoptPaused, none, evDomainStopped, evDomainStopped, evDomainStopped},
		StateFailed:    {evAdoptRunning, evAdoptPaused, none, none, none, none},
		StateUnknown:   {evAdoptRunning, evAdoptPaused, evAdoptSaved, evDomainStopped, evDomainStopped, evDomainStopped},
		StateWarm:      {evAdoptRunning, none, evDomainStopped, evDomainStopped, evDomainStopped, evDomainStopped},
	}
	if len(want) != int(numStates) {
		t.Fatalf("table covers %d states, want %d", len(want), numStates)
	}
	for _, warm := range []bool{false, true} {
		checkReconcile(t, want, doms, warm)
	}
}

// checkReconcile checks reconcileEvent against want; for a warm
// unikernel, a paused domain is adopted as its warm domain.
func checkReconcile(t *testing.T, want map[State][]evKind, doms []struct {
	st    hypervisor.State
	found bool
}, warm bool) {
	const none = evKind(255)
	for st, evs := range want {
		for i, d := range doms {
			w := evs[i]
			if warm && w == evAdoptPaused {
				w = evAdoptWarm
			}
			k, ok := reconcileEvent(st, d.st, d.found, warm)
			if !ok {
				k = none
			}
			if k != w {
				t.Errorf("reconcileEvent(%s, %s, found=%v, warm=%v) = %s, want %s", st, d.st, d.found, warm, k, w)
			}
			// every event it returns is one transition acts on
			if ok {
				if to, _ := transition(st, k); to == st {
					t.Errorf("reconcileEvent(%s, %s) = %s, which transition ignores", st, d.st, k)
				}
			}
		}
	}
}
