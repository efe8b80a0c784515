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
	evBootTimeout                 // not ready by the boot timeout
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

	numEvKinds
)

var evNames = [...]string{"summon", "adopt-running", "adopt-paused", "adopt-saved", "ready", "boot-failed",
	"boot-timeout", "idle", "stop", "stopped", "suspended", "saved", "stop-failed", "crashed", "domain-stopped",
	"stop-unknown", "prepare", "prepare-failed", "adopt-warm"}

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
	actArm       action = iota + 1 // new boot generation, arm the boot timeout
	actCount                       // count a boot (metrics, status timeline)
	actHold                        // gate.Hold (idempotent: Summon already holds)
	actStart                       // hypervisor Start (boot or restore)
	actResume                      // hypervisor Resume
	actProbe                       // start the readiness probe
	actRelease                     // gate.Release, record the boot duration, reset failures
	actCancel                      // cancel the boot timeout and the probe
	actDrop                        // gate.Drop
	actDestroy                     // hypervisor Stop(destroy), errors ignored
	actBackoff                     // count a failure, set the backoff
	actStop                        // hypervisor Stop with the event's mode
	actTail                        // log the console tail
	actReconcile                   // ask the reconciler to settle the domain's state
	actPrepare                     // hypervisor Prepare: create the domain paused (warm pool)

	numActions
)

var actNames = [...]string{"", "arm", "count", "hold", "start", "resume", "probe", "release", "cancel",
	"drop", "destroy", "backoff", "stop", "tail", "reconcile", "prepare"}

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
	noActs     []action
)

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
	switch st {
	case StateStopped:
		return fromStopped(ev)
	case StateStarting:
		switch ev {
		case evReady:
			return StateReady, readyActs
		case evBootFailed, evBootTimeout:
			return StateFailed, failActs
		case evStop:
			return StateStopping, abortBoot
		case evCrashed:
			return StateFailed, crashBoot
		case evDomainStopped:
			return StateFailed, lostBoot
		}
	case StateReady:
		switch ev {
		case evIdle, evStop:
			return StateStopping, stopActs
		case evCrashed:
			return StateStopped, tailActs
		case evDomainStopped:
			return StateStopped, noActs
		}
	case StateStopping:
		return fromStopping(ev)
	case StateSuspended:
		switch ev {
		case evSummon:
			return StateStarting, resumeActs
		case evStop:
			return StateStopping, stopActs
		case evCrashed:
			return StateStopped, tailActs
		case evDomainStopped:
			return StateStopped, noActs
		case evAdoptRunning:
			return StateStarting, adoptActs
		}
	case StateSaved:
		return fromSaved(ev)
	case StateFailed:
		switch ev {
		case evSummon:
			return StateStarting, bootActs
		case evAdoptRunning:
			return StateStarting, adoptActs
		case evAdoptPaused:
			return StateSuspended, noActs
		case evAdoptWarm:
			return StateWarm, noActs
		}
	case StateUnknown:
		return fromUnknown(ev)
	case StateWarm:
		return fromWarm(ev)
	}
	return st, noActs
}

// fromWarm: a warm domain is resumed by a summon (the boot timeline's
// mode "warm"), destroyed by a stop, and lost like a suspended one.
func fromWarm(ev evKind) (State, []action) {
	switch ev {
	case evSummon:
		return StateStarting, resumeActs
	case evStop:
		return StateStopping, stopActs
	case evPrepareFailed, evDomainStopped:
		return StateStopped, noActs
	case evCrashed:
		return StateStopped, tailActs
	case evAdoptRunning:
		return StateStarting, adoptActs
	}
	return StateWarm, noActs
}

func fromStopped(ev evKind) (State, []action) {
	switch ev {
	case evSummon:
		return StateStarting, bootActs
	case evAdoptRunning:
		return StateStarting, adoptActs
	case evAdoptPaused:
		return StateSuspended, noActs
	case evAdoptSaved:
		return StateSaved, noActs
	case evPrepare:
		return StateWarm, prepareAct
	case evAdoptWarm:
		return StateWarm, noActs
	}
	return StateStopped, noActs
}

func fromStopping(ev evKind) (State, []action) {
	switch ev {
	case evStoppedOff:
		return StateStopped, noActs
	case evSuspendedDone:
		return StateSuspended, noActs
	case evSavedDone:
		return StateSaved, noActs
	case evStopFailed:
		// Still running: release what the gate held for the next boot.
		return StateReady, readyActs
	case evStopUnknown:
		return StateUnknown, unknownAct
	case evCrashed:
		return StateStopped, tailActs
	}
	return StateStopping, noActs
}

func fromSaved(ev evKind) (State, []action) {
	switch ev {
	case evSummon:
		return StateStarting, bootActs
	case evStop:
		// Stopping a saved unikernel only discards its save image (when
		// the stop asks for it); actStop knows.
		return StateStopping, stopActs
	case evDomainStopped:
		return StateStopped, noActs
	case evAdoptRunning:
		return StateStarting, adoptActs
	case evAdoptPaused:
		return StateSuspended, noActs
	case evAdoptWarm:
		return StateWarm, noActs
	}
	return StateSaved, noActs
}

func fromUnknown(ev evKind) (State, []action) {
	switch ev {
	case evAdoptRunning:
		return StateStarting, adoptActs
	case evAdoptPaused:
		return StateSuspended, noActs
	case evAdoptSaved:
		return StateSaved, noActs
	case evAdoptWarm:
		return StateWarm, noActs
	case evDomainStopped:
		return StateStopped, noActs
	case evCrashed:
		return StateStopped, tailActs
	case evStop:
		return StateStopping, stopActs
	}
	return StateUnknown, noActs
}
