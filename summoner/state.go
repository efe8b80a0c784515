package summoner

import "fmt"

// State is a unikernel's state in the summoner.
type State int32

// Unikernel states.
const (
	// StateStopped: no domain runs; the next Summon boots one.
	StateStopped State = iota
	// StateStarting: the domain was started (or resumed, restored, adopted)
	// and the readiness probe runs; the gate holds its traffic.
	StateStarting
	// StateReady: the probe succeeded; the unikernel serves.
	StateReady
	// StateStopping: a stop is under way.
	StateStopping
	// StateSuspended: the domain is paused; the next Summon resumes it.
	StateSuspended
	// StateSaved: the domain is saved to disk; the next Summon restores it.
	StateSaved
	// StateFailed: the last boot failed; Summon retries after a backoff.
	StateFailed
	// StateUnknown: a stop failed and so did the check of the domain's
	// state; the reconciler asks the hypervisor again, with backoff, and
	// settles it. It counts as running against the budget.
	StateUnknown
	// StateWarm: a domain was created paused before its guest ran (the
	// warm pool); the next Summon resumes it. It counts against the warm
	// budget only.
	StateWarm

	numStates
)

var stateNames = [...]string{"stopped", "starting", "ready", "stopping", "suspended", "saved", "failed", "unknown", "warm"}

func (s State) String() string {
	if s >= 0 && s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// evKind is what happened to a unikernel: the input of transition.
type evKind uint8

const (
	evSummon        evKind = iota // a query, traffic or the operator wants it running (budget reserved)
	evAdoptRunning                // at Run or on reconcile: its domain runs
	evAdoptPaused                 // at Run or on reconcile: its domain is paused
	evAdoptSaved                  // at Run or on reconcile: its domain is saved
	evReady                       // the readiness probe succeeded
	evBootFailed                  // Start/Resume or the probe failed
	evBootTimeout                 // not ready by the boot timeout, or the Start/Resume call not returned by the create deadline
	evIdle                        // no activity for the idle timeout
	evStop                        // operator, budget eviction or reload wants it stopped
	evStoppedOff                  // a destroy/shutdown stop completed
	evSuspendedDone               // a suspend stop completed
	evSavedDone                   // a save stop completed
	evStopFailed                  // a stop failed and the domain still runs
	evCrashed                     // the hypervisor reports a crash
	evDomainStopped               // the hypervisor reports a stop we did not ask for, or the reconciler finds the domain gone
	evStopUnknown                 // a stop failed and the domain's state could not be read
	evPrepare                     // the warm pool wants a paused domain ready (warm budget reserved)
	evPrepareFailed               // creating the paused domain failed
	evAdoptWarm                   // at Run or on reconcile: the domain of a warm unikernel is paused
	evSnapshot                    // the probe succeeded on a boot that makes the unikernel's save file

	numEvKinds
)

var evNames = [...]string{"summon", "adopt-running", "adopt-paused", "adopt-saved", "ready", "boot-failed",
	"boot-timeout", "idle", "stop", "stopped", "suspended", "saved", "stop-failed", "crashed", "domain-stopped",
	"stop-unknown", "prepare", "prepare-failed", "adopt-warm", "snapshot"}

func (e evKind) String() string {
	if e < numEvKinds {
		return evNames[e]
	}
	return fmt.Sprintf("evKind(%d)", e)
}

// action is a side effect the unikernel's actor performs after a
// transition, in order.
type action uint8

const (
	actArm       action = iota + 1 // new boot generation (the probe arms the boot timeout)
	actCount                       // count a boot (metrics, status timeline)
	actHold                        // gate.Hold (idempotent: Summon already holds)
	actStart                       // hypervisor Start (boot or restore), under the create deadline
	actResume                      // hypervisor Resume, under the create deadline
	actProbe                       // once Start/Resume returned: arm the boot timeout, start the readiness probe
	actRelease                     // gate.Release, record the boot duration, reset failures
	actCancel                      // cancel the boot timeout (or create deadline), the probe and a Start under way
	actDrop                        // gate.Drop
	actDestroy                     // hypervisor Stop(destroy), errors ignored
	actBackoff                     // count a failure, set the backoff
	actStop                        // hypervisor Stop with the event's mode
	actTail                        // log the console tail
	actReconcile                   // ask the reconciler to settle the domain's state
	actPrepare                     // hypervisor Prepare: create the domain paused (warm pool)
	actSnapshot                    // save the domain to its save file and restore it, under the create deadline

	numActions
)

var actNames = [...]string{"", "arm", "count", "hold", "start", "resume", "probe", "release", "cancel",
	"drop", "destroy", "backoff", "stop", "tail", "reconcile", "prepare", "snapshot"}

func (a action) String() string {
	if int(a) < len(actNames) {
		return actNames[a]
	}
	return fmt.Sprintf("action(%d)", a)
}

// Action lists shared by several transitions.
var (
	bootActs   = []action{actArm, actCount, actHold, actStart, actProbe}
	resumeActs = []action{actArm, actCount, actHold, actResume, actProbe}
	adoptActs  = []action{actArm, actProbe}
	failActs   = []action{actCancel, actDrop, actDestroy, actBackoff}
	crashBoot  = []action{actCancel, actDrop, actTail, actBackoff}
	lostBoot   = []action{actCancel, actDrop, actBackoff}
	abortBoot  = []action{actCancel, actDrop, actStop}
	readyActs  = []action{actRelease}
	stopActs   = []action{actStop}
	tailActs   = []action{actTail}
	unknownAct = []action{actReconcile}
	prepareAct = []action{actPrepare}
	snapActs   = []action{actArm, actSnapshot, actProbe}
	noActs     []action
)

// edge is one transition: the next state and the side effects to perform,
// in order.
type edge struct {
	to   State
	acts []action
}

// edges are a state's transitions, by event.
type edges map[evKind]edge

// Edges shared by several states.
var (
	// booting: a summon boots a unikernel that has no domain (or a saved
	// one, which actStart restores).
	booting = edges{evSummon: {StateStarting, bootActs}}
	// stopping: a stop of a domain that is not booting.
	stopping = edges{evStop: {StateStopping, stopActs}}
	// adopted: the hypervisor says the domain runs, is paused or is saved,
	// or is the paused domain of a warm unikernel (at Run or on
	// reconcile).
	adopted = edges{
		evAdoptRunning: {StateStarting, adoptActs},
		evAdoptPaused:  {StateSuspended, noActs},
		evAdoptSaved:   {StateSaved, noActs},
		evAdoptWarm:    {StateWarm, noActs},
	}
	// gone: a domain that was up crashed or stopped on its own.
	gone = edges{
		evCrashed:       {StateStopped, tailActs},
		evDomainStopped: {StateStopped, noActs},
	}
)

// machine is the state machine of transition; each state's edges are
// joined from the shared ones and its own.
var machine = [numStates]edges{
	StateStopped: join(booting, adopted, edges{evPrepare: {StateWarm, prepareAct}}),
	StateStarting: {
		evReady: {StateReady, readyActs},
		// A snapshot unikernel's first boot is ready: it is saved to its
		// file and restored, then probed again (start = "snapshot").
		evSnapshot:      {StateStarting, snapActs},
		evBootFailed:    {StateFailed, failActs},
		evBootTimeout:   {StateFailed, failActs},
		evStop:          {StateStopping, abortBoot},
		evCrashed:       {StateFailed, crashBoot},
		evDomainStopped: {StateFailed, lostBoot},
	},
	StateReady: join(stopping, gone, edges{evIdle: {StateStopping, stopActs}}),
	StateStopping: {
		evStoppedOff:    {StateStopped, noActs},
		evSuspendedDone: {StateSuspended, noActs},
		evSavedDone:     {StateSaved, noActs},
		// Still running: release what the gate held for the next boot.
		evStopFailed:  {StateReady, readyActs},
		evStopUnknown: {StateUnknown, unknownAct},
		evCrashed:     {StateStopped, tailActs},
	},
	StateSuspended: join(stopping, gone, edges{
		evSummon:       {StateStarting, resumeActs},
		evAdoptRunning: adopted[evAdoptRunning],
	}),
	// Stopping a saved unikernel only discards its save image (when the
	// stop asks for it); actStop knows.
	StateSaved: join(booting, stopping, adopted, edges{evDomainStopped: {StateStopped, noActs}}),
	StateFailed: join(booting, edges{
		evAdoptRunning: adopted[evAdoptRunning],
		evAdoptPaused:  adopted[evAdoptPaused],
		evAdoptWarm:    adopted[evAdoptWarm],
	}),
	StateUnknown: join(stopping, adopted, gone),
	// A warm domain is resumed by a summon (the boot timeline's mode
	// "warm"), destroyed by a stop, and lost like a suspended one.
	StateWarm: join(stopping, gone, edges{
		evSummon:        {StateStarting, resumeActs},
		evPrepareFailed: {StateStopped, noActs},
		evAdoptRunning:  adopted[evAdoptRunning],
	}),
}

// join returns the union of sets of edges, which must not overlap.
func join(sets ...edges) edges {
	all := edges{}
	for _, set := range sets {
		for ev, e := range set {
			if _, dup := all[ev]; dup {
				panic(fmt.Sprintf("summoner: two transitions on %s", ev))
			}
			all[ev] = e
		}
	}
	return all
}

// transition is the summoner's state machine: given a unikernel's state and
// what happened, it returns the next state and the side effects to perform,
// in order. It is pure. Pairs that make no sense (a stale probe result, a
// summon of a running unikernel, ...) return the state unchanged and no
// action.
//
// Guards that need time or I/O are applied by the caller before: the backoff
// check (Summon refuses in StateFailed while the backoff runs), the budget
// reservation (Summon), staleness of probe/timeout events (boot generation),
// the idle re-check, and the check with the hypervisor that a crash or stop
// event is not about an earlier incarnation of the domain.
func transition(st State, ev evKind) (State, []action) {
	if st >= 0 && st < numStates {
		if e, ok := machine[st][ev]; ok {
			return e.to, e.acts
		}
	}
	return st, noActs
}
