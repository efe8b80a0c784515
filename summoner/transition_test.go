package summoner

import (
	"slices"
	"testing"
)

// TestTransitionTable checks transition over every (state, event) pair.
// Every pair has a row: the pairs that make no sense are listed as
// "unchanged, no action" explicitly, and a missing row fails the test.
func TestTransitionTable(t *testing.T) {
	type key struct {
		st State
		ev evKind
	}
	type want struct {
		st   State
		acts []action
	}
	table := map[key]want{}
	row := func(st State, ev evKind, to State, acts ...action) {
		t.Helper()
		k := key{st, ev}
		if _, dup := table[k]; dup {
			t.Fatalf("duplicate row %s/%s", st, ev)
		}
		table[k] = want{to, acts}
	}
	// ignored lists pairs that leave the state unchanged with no action.
	ignored := func(st State, evs ...evKind) {
		t.Helper()
		for _, ev := range evs {
			row(st, ev, st)
		}
	}

	transitionRows(row, ignored)

	for st := State(0); st < numStates; st++ {
		for ev := evKind(0); ev < numEvKinds; ev++ {
			w, ok := table[key{st, ev}]
			if !ok {
				t.Errorf("no row for %s/%s", st, ev)
				continue
			}
			gotSt, gotActs := transition(st, ev)
			if gotSt != w.st || !slices.Equal(gotActs, w.acts) {
				t.Errorf("transition(%s, %s) = %s %v, want %s %v", st, ev, gotSt, gotActs, w.st, w.acts)
			}
		}
	}
	if want := int(numStates) * int(numEvKinds); len(table) != want {
		t.Errorf("table has %d rows, want %d", len(table), want)
	}
}

// TestTransitionInvariants checks properties every transition must have,
// independently of the table.
func TestTransitionInvariants(t *testing.T) {
	for st := State(0); st < numStates; st++ {
		for ev := evKind(0); ev < numEvKinds; ev++ {
			to, acts := transition(st, ev)
			hold := slices.Index(acts, actHold)
			start := max(slices.Index(acts, actStart), slices.Index(acts, actResume))
			if start >= 0 && (hold < 0 || hold > start) {
				t.Errorf("%s/%s: starts without holding the gate first: %v", st, ev, acts)
			}
			if to == StateStarting && st != StateStarting && !slices.Contains(acts, actArm) {
				t.Errorf("%s/%s: enters starting without a boot timeout: %v", st, ev, acts)
			}
			if st == StateStarting && to != StateStarting && to != StateReady && !slices.Contains(acts, actDrop) {
				t.Errorf("%s/%s: leaves starting without dropping the gate: %v", st, ev, acts)
			}
			if to == StateFailed && st != StateFailed && !slices.Contains(acts, actBackoff) {
				t.Errorf("%s/%s: fails without a backoff: %v", st, ev, acts)
			}
		}
	}
}

// transitionRows lists the rows of TestTransitionTable: those of the
// states a guest runs or comes from here, the rest in restingRows.
func transitionRows(row func(State, evKind, State, ...action), ignored func(State, ...evKind)) {
	boot := []action{actArm, actCount, actHold, actStart, actProbe}

	row(StateStopped, evSummon, StateStarting, boot...)
	row(StateStopped, evAdoptRunning, StateStarting, actArm, actProbe)
	row(StateStopped, evAdoptPaused, StateSuspended)
	row(StateStopped, evAdoptSaved, StateSaved)
	row(StateStopped, evPrepare, StateWarm, actPrepare) // issue 16: the warm pool
	row(StateStopped, evAdoptWarm, StateWarm)
	ignored(StateStopped, evSnapshot, evPrepareFailed, evReady, evBootFailed, evBootTimeout, evIdle, evStop, evStoppedOff,
		evSuspendedDone, evSavedDone, evStopFailed, evCrashed, evDomainStopped, evStopUnknown)

	row(StateStarting, evReady, StateReady, actRelease)
	// issue 16: a snapshot unikernel's first boot is ready: save, restore, probe again
	row(StateStarting, evSnapshot, StateStarting, actArm, actSnapshot, actProbe)
	row(StateStarting, evBootFailed, StateFailed, actCancel, actDrop, actDestroy, actBackoff)
	row(StateStarting, evBootTimeout, StateFailed, actCancel, actDrop, actDestroy, actBackoff)
	row(StateStarting, evStop, StateStopping, actCancel, actDrop, actStop)
	row(StateStarting, evCrashed, StateFailed, actCancel, actDrop, actTail, actBackoff)
	row(StateStarting, evDomainStopped, StateFailed, actCancel, actDrop, actBackoff)
	ignored(StateStarting, evPrepare, evPrepareFailed, evAdoptWarm, evSummon, evAdoptRunning, evAdoptPaused, evAdoptSaved, evIdle,
		evStoppedOff, evSuspendedDone, evSavedDone, evStopFailed, evStopUnknown)

	row(StateReady, evIdle, StateStopping, actStop)
	row(StateReady, evStop, StateStopping, actStop)
	row(StateReady, evCrashed, StateStopped, actTail)
	row(StateReady, evDomainStopped, StateStopped)
	ignored(StateReady, evSnapshot, evPrepare, evPrepareFailed, evAdoptWarm, evSummon, evAdoptRunning, evAdoptPaused, evAdoptSaved, evReady,
		evBootFailed, evBootTimeout, evStoppedOff, evSuspendedDone, evSavedDone, evStopFailed, evStopUnknown)

	row(StateStopping, evStoppedOff, StateStopped)
	row(StateStopping, evSuspendedDone, StateSuspended)
	row(StateStopping, evSavedDone, StateSaved)
	// issue 15: the gate held the addresses before the stop: release them
	row(StateStopping, evStopFailed, StateReady, actRelease)
	row(StateStopping, evStopUnknown, StateUnknown, actReconcile)
	row(StateStopping, evCrashed, StateStopped, actTail)
	ignored(StateStopping, evSnapshot, evPrepare, evPrepareFailed, evAdoptWarm, evSummon, evAdoptRunning, evAdoptPaused, evAdoptSaved, evReady,
		evBootFailed, evBootTimeout, evIdle, evStop, evDomainStopped)

	restingRows(row, ignored)
}

// restingRows lists the rows of TestTransitionTable for the states in which
// no guest runs: suspended, saved, failed, unknown and warm.
func restingRows(row func(State, evKind, State, ...action), ignored func(State, ...evKind)) {
	boot := []action{actArm, actCount, actHold, actStart, actProbe}
	resume := []action{actArm, actCount, actHold, actResume, actProbe}

	row(StateSuspended, evSummon, StateStarting, resume...)
	row(StateSuspended, evStop, StateStopping, actStop)
	row(StateSuspended, evCrashed, StateStopped, actTail)
	row(StateSuspended, evDomainStopped, StateStopped)
	row(StateSuspended, evAdoptRunning, StateStarting, actArm, actProbe) // reconcile: resumed behind our back
	ignored(StateSuspended, evSnapshot, evPrepare, evPrepareFailed, evAdoptWarm, evAdoptPaused, evAdoptSaved, evReady, evBootFailed,
		evBootTimeout, evIdle, evStoppedOff, evSuspendedDone, evSavedDone, evStopFailed, evStopUnknown)

	row(StateSaved, evSummon, StateStarting, boot...)
	// issue 15: a stop may discard the save image; reconcile
	row(StateSaved, evStop, StateStopping, actStop)
	row(StateSaved, evDomainStopped, StateStopped)
	row(StateSaved, evAdoptRunning, StateStarting, actArm, actProbe)
	row(StateSaved, evAdoptPaused, StateSuspended)
	row(StateSaved, evAdoptWarm, StateWarm)
	ignored(StateSaved, evSnapshot, evPrepare, evPrepareFailed, evAdoptSaved, evReady, evBootFailed,
		evBootTimeout, evIdle, evStoppedOff, evSuspendedDone, evSavedDone, evStopFailed,
		evCrashed, evStopUnknown)

	row(StateFailed, evSummon, StateStarting, boot...)
	// issue 15: the reconciler finds its domain running or paused
	row(StateFailed, evAdoptRunning, StateStarting, actArm, actProbe)
	row(StateFailed, evAdoptPaused, StateSuspended)
	row(StateFailed, evAdoptWarm, StateWarm)
	ignored(StateFailed, evSnapshot, evPrepare, evPrepareFailed, evAdoptSaved, evReady, evBootFailed,
		evBootTimeout, evIdle, evStop, evStoppedOff, evSuspendedDone, evSavedDone, evStopFailed,
		evCrashed, evDomainStopped, evStopUnknown)

	// issue 15: a stop whose outcome is unknown; the reconciler settles it
	row(StateUnknown, evAdoptRunning, StateStarting, actArm, actProbe)
	row(StateUnknown, evAdoptPaused, StateSuspended)
	row(StateUnknown, evAdoptSaved, StateSaved)
	row(StateUnknown, evAdoptWarm, StateWarm)
	row(StateUnknown, evDomainStopped, StateStopped)
	row(StateUnknown, evCrashed, StateStopped, actTail)
	row(StateUnknown, evStop, StateStopping, actStop)
	ignored(StateUnknown, evSnapshot, evPrepare, evPrepareFailed, evSummon, evReady, evBootFailed, evBootTimeout, evIdle, evStoppedOff,
		evSuspendedDone, evSavedDone, evStopFailed, evStopUnknown)

	// issue 16: a warm domain (created paused before its guest ran)
	row(StateWarm, evSummon, StateStarting, resume...)
	row(StateWarm, evStop, StateStopping, actStop)
	row(StateWarm, evPrepareFailed, StateStopped)
	row(StateWarm, evDomainStopped, StateStopped)
	row(StateWarm, evCrashed, StateStopped, actTail)
	row(StateWarm, evAdoptRunning, StateStarting, actArm, actProbe)
	ignored(StateWarm, evSnapshot, evPrepare, evAdoptWarm, evAdoptPaused, evAdoptSaved, evReady, evBootFailed,
		evBootTimeout, evIdle, evStoppedOff, evSuspendedDone, evSavedDone, evStopFailed, evStopUnknown)
}
