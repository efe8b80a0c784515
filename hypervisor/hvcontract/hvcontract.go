// Package hvcontract is the contract test suite every hypervisor.Hypervisor
// implementation passes: the hvtest fake, the libvirt backend over libvirt's
// in-process test:///default driver, and the libvirt backend over a real
// libvirtd booting real VMs.
//
// An implementation's test calls Run with a Harness that creates a fresh
// hypervisor and a bootable Spec, and, where it can, crashes a domain and
// creates a foreign one.
package hvcontract

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// Harness adapts one hypervisor implementation to the suite.
type Harness struct {
	// New returns a fresh hypervisor. The suite closes it (Close must be
	// idempotent).
	New func(t *testing.T) hypervisor.Hypervisor
	// Spec returns a bootable spec called name.
	Spec func(t *testing.T, name string) hypervisor.Spec
	// Crash makes the running domain name crash the way a real guest can
	// (the fake's Crash, killing QEMU, ...). nil skips the Crash case.
	Crash func(t *testing.T, hv hypervisor.Hypervisor, name string)
	// Foreign makes a domain that jitsu did not create exist and returns
	// its name. nil skips the Foreign case.
	Foreign func(t *testing.T, hv hypervisor.Hypervisor) string
	// GuestClock reads the clock of the guest of the running domain
	// started with spec (which has Spec.Agent set), e.g. through the
	// example unikernel's /.jitsu/now; it fails while the guest is not
	// ready. nil skips the GuestTime case.
	GuestClock func(t *testing.T, hv hypervisor.Hypervisor, spec hypervisor.Spec) (time.Time, error)
	// Skip maps a case name (see Cases) to the reason the implementation
	// cannot run it; the case is skipped with that reason.
	Skip map[string]string
	// Prefix is prepended to every domain name, so that several runs can
	// share one hypervisor without clashing.
	Prefix string
	// Timeout bounds every wait for an event or a state; 0 means 60 s.
	Timeout time.Duration
}

// Cases lists the names of the suite's cases, for Harness.Skip.
var Cases = []string{
	"StartStateList", "ExplicitMAC", "StopDestroy", "StopShutdown",
	"SuspendResume", "SaveRestore", "NotFound", "BadStopMode", "Foreign",
	"Crash", "ConcurrentStart", "Close", "DiscardSave", "Prepare",
	"GuestTime", "Snapshot", "PrepareSnapshot",
}

// Run runs every case of the contract against h, each as a subtest with a
// fresh hypervisor.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Timeout == 0 {
		h.Timeout = 60 * time.Second
	}
	cases := map[string]func(*testing.T, *env){
		"StartStateList":  testStartStateList,
		"ExplicitMAC":     testExplicitMAC,
		"StopDestroy":     func(t *testing.T, e *env) { testStop(t, e, hypervisor.StopDestroy) },
		"StopShutdown":    func(t *testing.T, e *env) { testStop(t, e, hypervisor.StopShutdown) },
		"SuspendResume":   testSuspendResume,
		"SaveRestore":     testSaveRestore,
		"NotFound":        testNotFound,
		"BadStopMode":     testBadStopMode,
		"Foreign":         testForeign,
		"Crash":           testCrash,
		"ConcurrentStart": testConcurrentStart,
		"Close":           testClose,
		"DiscardSave":     testDiscardSave,
		"Prepare":         testPrepare,
		"Snapshot":        testSnapshot,
		"PrepareSnapshot": testPrepareSnapshot,
		"GuestTime":       testGuestTime,
	}
	for _, name := range Cases {
		t.Run(name, func(t *testing.T) {
			if reason, ok := h.Skip[name]; ok {
				t.Skip(reason)
			}
			cases[name](t, newEnv(t, h, name))
		})
	}
}

// env is one case's hypervisor plus an event recorder.
type env struct {
	h    Harness
	hv   hypervisor.Hypervisor
	ctx  context.Context
	name string // the case's default domain name

	mu     sync.Mutex
	seen   []hypervisor.Event
	notify chan struct{}
	closed bool
	done   chan struct{}
}

func newEnv(t *testing.T, h Harness, caseName string) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*h.Timeout)
	hv := h.New(t)
	e := &env{
		h: h, hv: hv, ctx: ctx,
		name:   strings.ToLower(h.Prefix + "c-" + caseName),
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	go e.record()
	t.Cleanup(func() {
		// Leave nothing running; errors are expected for domains that
		// are already gone.
		_ = hv.Stop(context.Background(), e.name, hypervisor.StopDestroy)
		if err := hv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case <-e.done:
		case <-time.After(h.Timeout):
			t.Errorf("Events channel not closed %v after Close", h.Timeout)
		}
		cancel()
	})
	return e
}

// record collects every event until the channel is closed.
func (e *env) record() {
	defer close(e.done)
	for ev := range e.hv.Events() {
		e.mu.Lock()
		e.seen = append(e.seen, ev)
		e.mu.Unlock()
		select {
		case e.notify <- struct{}{}:
		default:
		}
	}
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	select {
	case e.notify <- struct{}{}:
	default:
	}
}

// events returns the events of domain name seen so far, in order.
func (e *env) events(name string) []hypervisor.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []hypervisor.Event
	for _, ev := range e.seen {
		if ev.Name == name {
			out = append(out, ev)
		}
	}
	return out
}

// waitEvents waits until the events of name contain kinds in this order
// (other events may come between them) and returns the matching events.
func (e *env) waitEvents(t *testing.T, name string, kinds ...hypervisor.EventKind) []hypervisor.Event {
	t.Helper()
	deadline := time.NewTimer(e.h.Timeout)
	defer deadline.Stop()
	for {
		evs := e.events(name)
		if m := subsequence(evs, kinds); m != nil {
			return m
		}
		select {
		case <-e.notify:
		case <-deadline.C:
			t.Fatalf("events of %q: want %v in order within %v, got %v", name, kinds, e.h.Timeout, describe(e.events(name)))
			return nil
		}
	}
}

// subsequence returns the events matching kinds in order, or nil.
func subsequence(evs []hypervisor.Event, kinds []hypervisor.EventKind) []hypervisor.Event {
	var m []hypervisor.Event
	for _, ev := range evs {
		if len(m) < len(kinds) && ev.Kind == kinds[len(m)] {
			m = append(m, ev)
		}
	}
	if len(m) == len(kinds) {
		return m
	}
	return nil
}

func describe(evs []hypervisor.Event) string {
	parts := make([]string, len(evs))
	for i, ev := range evs {
		parts[i] = fmt.Sprintf("%s(%s)", ev.Kind, ev.Detail)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// count is how many events of kind name has had.
func (e *env) count(name string, kind hypervisor.EventKind) int {
	n := 0
	for _, ev := range e.events(name) {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

func (e *env) start(t *testing.T, name string) hypervisor.Spec {
	t.Helper()
	spec := e.h.Spec(t, name)
	if err := e.hv.Start(e.ctx, spec); err != nil {
		t.Fatalf("Start(%q): %v", name, err)
	}
	return spec
}

func (e *env) wantState(t *testing.T, name string, want ...hypervisor.State) {
	t.Helper()
	st, err := e.hv.State(e.ctx, name)
	if err != nil {
		t.Fatalf("State(%q): %v", name, err)
	}
	for _, w := range want {
		if st == w {
			return
		}
	}
	t.Fatalf("State(%q) = %v, want one of %v", name, st, want)
}

// wantGone checks that name is not running: its state is one of states,
// or it no longer exists.
func (e *env) wantGone(t *testing.T, name string, states ...hypervisor.State) {
	t.Helper()
	st, err := e.hv.State(e.ctx, name)
	if errors.Is(err, hypervisor.ErrNotFound) {
		return
	}
	if err != nil {
		t.Fatalf("State(%q): %v", name, err)
	}
	for _, s := range states {
		if st == s {
			return
		}
	}
	t.Fatalf("State(%q) = %v, want one of %v or ErrNotFound", name, st, states)
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func (e *env) listed(t *testing.T, name string) (hypervisor.Domain, bool) {
	t.Helper()
	doms, err := e.hv.List(e.ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, d := range doms {
		if d.Name == name {
			return d, true
		}
	}
	return hypervisor.Domain{}, false
}

func testStartStateList(t *testing.T, e *env) {
	spec := e.start(t, e.name)
	e.wantState(t, e.name, hypervisor.StateRunning)
	d, ok := e.listed(t, e.name)
	if !ok {
		t.Fatalf("List does not contain %q", e.name)
	}
	if d.State != hypervisor.StateRunning {
		t.Errorf("List: %q state %v, want running", e.name, d.State)
	}
	wantMAC := spec.NIC()
	if d.MAC.String() != wantMAC.String() {
		t.Errorf("List: %q MAC %v, want %v", e.name, d.MAC, wantMAC)
	}
	e.waitEvents(t, e.name, hypervisor.EventStarted)
	wantErr(t, "second Start", e.hv.Start(e.ctx, spec), hypervisor.ErrAlreadyRunning)
	e.wantState(t, e.name, hypervisor.StateRunning)
}

func testExplicitMAC(t *testing.T, e *env) {
	spec := e.h.Spec(t, e.name)
	spec.MAC = net.HardwareAddr{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}
	if err := e.hv.Start(e.ctx, spec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	d, ok := e.listed(t, e.name)
	if !ok {
		t.Fatalf("List does not contain %q", e.name)
	}
	if d.MAC.String() != spec.MAC.String() {
		t.Errorf("List: MAC %v, want %v", d.MAC, spec.MAC)
	}
}

func testStop(t *testing.T, e *env, mode hypervisor.StopMode) {
	e.start(t, e.name)
	e.waitEvents(t, e.name, hypervisor.EventStarted)
	t0 := time.Now()
	if err := e.hv.Stop(e.ctx, e.name, mode); err != nil {
		t.Fatalf("Stop(%s): %v", mode, err)
	}
	t.Logf("Stop(%s) took %v", mode, time.Since(t0))
	evs := e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventStopped)
	if n := e.count(e.name, hypervisor.EventCrashed); n != 0 {
		t.Errorf("a requested %s gave %d crashed events: %v", mode, n, describe(e.events(e.name)))
	}
	t.Logf("stopped event detail %q", evs[1].Detail)
	e.wantGone(t, e.name, hypervisor.StateShutoff)
	if d, ok := e.listed(t, e.name); ok && d.State != hypervisor.StateShutoff {
		t.Errorf("List after Stop(%s): state %v, want shutoff or absent", mode, d.State)
	}
	err := e.hv.Stop(e.ctx, e.name, mode)
	if !errors.Is(err, hypervisor.ErrNotRunning) && !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Stop(%s) of a stopped domain: %v, want ErrNotRunning or ErrNotFound", mode, err)
	}
	// It boots again.
	e.start(t, e.name)
	e.wantState(t, e.name, hypervisor.StateRunning)
	e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventStopped, hypervisor.EventStarted)
}

func testSuspendResume(t *testing.T, e *env) {
	e.start(t, e.name)
	e.waitEvents(t, e.name, hypervisor.EventStarted)
	if err := e.hv.Stop(e.ctx, e.name, hypervisor.StopSuspend); err != nil {
		t.Fatalf("Stop(suspend): %v", err)
	}
	e.wantState(t, e.name, hypervisor.StatePaused)
	e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventSuspended)
	if err := e.hv.Stop(e.ctx, e.name, hypervisor.StopSuspend); err != nil {
		t.Errorf("Stop(suspend) of a paused domain: %v, want nil", err)
	}
	if d, ok := e.listed(t, e.name); !ok || d.State != hypervisor.StatePaused {
		t.Errorf("List: %q listed=%v state %v, want paused", e.name, ok, d.State)
	}
	if err := e.hv.Resume(e.ctx, e.name); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	e.wantState(t, e.name, hypervisor.StateRunning)
	e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventSuspended, hypervisor.EventResumed)
	wantErr(t, "Resume of a running domain", e.hv.Resume(e.ctx, e.name), hypervisor.ErrNotRunning)

	// Start of a paused domain resumes it.
	if err := e.hv.Stop(e.ctx, e.name, hypervisor.StopSuspend); err != nil {
		t.Fatalf("second Stop(suspend): %v", err)
	}
	e.wantState(t, e.name, hypervisor.StatePaused)
	e.start(t, e.name)
	e.wantState(t, e.name, hypervisor.StateRunning)
	e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventSuspended, hypervisor.EventResumed,
		hypervisor.EventSuspended, hypervisor.EventResumed)
	if n := e.count(e.name, hypervisor.EventStarted); n != 1 {
		t.Errorf("suspend/resume gave %d started events, want 1 (no reboot): %v", n, describe(e.events(e.name)))
	}
}

// testPrepare: a prepared (warm) domain is paused and listed; Resume or
// Start runs it; preparing a paused or running domain is refused.
func testPrepare(t *testing.T, e *env) {
	spec := e.h.Spec(t, e.name)
	if err := e.hv.Prepare(e.ctx, spec); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	e.wantState(t, e.name, hypervisor.StatePaused)
	if d, ok := e.listed(t, e.name); !ok || d.State != hypervisor.StatePaused {
		t.Errorf("List: %q listed=%v state %v, want paused", e.name, ok, d.State)
	}
	wantErr(t, "Prepare of a paused domain", e.hv.Prepare(e.ctx, spec), hypervisor.ErrAlreadyRunning)
	if err := e.hv.Resume(e.ctx, e.name); err != nil {
		t.Fatalf("Resume of a prepared domain: %v", err)
	}
	e.wantState(t, e.name, hypervisor.StateRunning)
	wantErr(t, "Prepare of a running domain", e.hv.Prepare(e.ctx, spec), hypervisor.ErrAlreadyRunning)
	if err := e.hv.Stop(e.ctx, e.name, hypervisor.StopDestroy); err != nil {
		t.Fatalf("Stop(destroy): %v", err)
	}
	e.wantGone(t, e.name, hypervisor.StateShutoff)

	// Start of a prepared domain runs it.
	if err := e.hv.Prepare(e.ctx, spec); err != nil {
		t.Fatalf("second Prepare: %v", err)
	}
	e.wantState(t, e.name, hypervisor.StatePaused)
	e.start(t, e.name)
	e.wantState(t, e.name, hypervisor.StateRunning)
	e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventStarted)
}

func testSaveRestore(t *testing.T, e *env) {
	e.start(t, e.name)
	e.waitEvents(t, e.name, hypervisor.EventStarted)
	t0 := time.Now()
	if err := e.hv.Stop(e.ctx, e.name, hypervisor.StopSave); err != nil {
		t.Fatalf("Stop(save): %v", err)
	}
	t.Logf("save took %v", time.Since(t0))
	e.wantState(t, e.name, hypervisor.StateSaved)
	e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventStopped)
	if d, ok := e.listed(t, e.name); !ok || d.State != hypervisor.StateSaved {
		t.Errorf("List: %q listed=%v state %v, want saved", e.name, ok, d.State)
	}
	wantErr(t, "Stop(save) of a saved domain", e.hv.Stop(e.ctx, e.name, hypervisor.StopSave), hypervisor.ErrNotRunning)
	t0 = time.Now()
	e.start(t, e.name)
	t.Logf("restore took %v", time.Since(t0))
	e.wantState(t, e.name, hypervisor.StateRunning)
	evs := e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventStopped, hypervisor.EventStarted)
	t.Logf("events %v", describe(evs))
	if n := e.count(e.name, hypervisor.EventCrashed); n != 0 {
		t.Errorf("save/restore gave crashed events: %v", describe(e.events(e.name)))
	}
	// Once destroyed, it boots afresh (no save image left).
	if err := e.hv.Stop(e.ctx, e.name, hypervisor.StopDestroy); err != nil {
		t.Fatalf("Stop(destroy) after restore: %v", err)
	}
	e.wantGone(t, e.name, hypervisor.StateShutoff)
	e.start(t, e.name)
	e.wantState(t, e.name, hypervisor.StateRunning)
	e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventStopped, hypervisor.EventStarted,
		hypervisor.EventStopped, hypervisor.EventStarted)
}

// testDiscardSave: a discarded save image is gone (the domain is shut off
// and boots afresh); discarding where there is none changes nothing.
func testDiscardSave(t *testing.T, e *env) {
	wantErr(t, "DiscardSave of a missing domain", e.hv.DiscardSave(e.ctx, e.name+"-missing"), hypervisor.ErrNotFound)
	e.start(t, e.name)
	e.waitEvents(t, e.name, hypervisor.EventStarted)
	if err := e.hv.DiscardSave(e.ctx, e.name); err != nil {
		t.Fatalf("DiscardSave of a running domain without a save image: %v", err)
	}
	e.wantState(t, e.name, hypervisor.StateRunning)
	if err := e.hv.Stop(e.ctx, e.name, hypervisor.StopSave); err != nil {
		t.Fatalf("Stop(save): %v", err)
	}
	e.wantState(t, e.name, hypervisor.StateSaved)
	if err := e.hv.DiscardSave(e.ctx, e.name); err != nil {
		t.Fatalf("DiscardSave: %v", err)
	}
	e.wantGone(t, e.name, hypervisor.StateShutoff)
	if err := e.hv.DiscardSave(e.ctx, e.name); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("DiscardSave twice: %v", err)
	}
	e.start(t, e.name)
	e.wantState(t, e.name, hypervisor.StateRunning)
	// Booted afresh: a second EventStarted without a restore in between.
	e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventStopped, hypervisor.EventStarted)
}

// testSnapshot: a domain saved to a file stops; it is restored from the
// file, which stays, as often as wanted; a corrupt file is an error.
func testSnapshot(t *testing.T, e *env) {
	path := filepath.Join(t.TempDir(), "snap.save")
	wantErr(t, "SaveSnapshot of a missing domain", e.hv.SaveSnapshot(e.ctx, e.name+"-missing", path), hypervisor.ErrNotFound)
	spec := e.start(t, e.name)
	e.waitEvents(t, e.name, hypervisor.EventStarted)
	t0 := time.Now()
	if err := e.hv.SaveSnapshot(e.ctx, e.name, path); err != nil {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	t.Logf("save took %v", time.Since(t0))
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("save file: %v, %v", fi, err)
	}
	e.wantGone(t, e.name, hypervisor.StateShutoff)
	e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventStopped)
	for i := range 2 {
		t0 = time.Now()
		if err := e.hv.RestoreSnapshot(e.ctx, spec, path); err != nil {
			t.Fatalf("RestoreSnapshot #%d: %v", i+1, err)
		}
		t.Logf("restore #%d took %v", i+1, time.Since(t0))
		e.wantState(t, e.name, hypervisor.StateRunning)
		if i == 0 {
			wantErr(t, "RestoreSnapshot of a running domain", e.hv.RestoreSnapshot(e.ctx, spec, path), hypervisor.ErrAlreadyRunning)
		}
		if err := e.hv.Stop(e.ctx, e.name, hypervisor.StopDestroy); err != nil {
			t.Fatalf("Stop(destroy) after restore: %v", err)
		}
		e.wantGone(t, e.name, hypervisor.StateShutoff)
	}
	evs := e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventStopped, hypervisor.EventStarted,
		hypervisor.EventStopped, hypervisor.EventStarted, hypervisor.EventStopped)
	t.Logf("events %v", describe(evs))
	if n := e.count(e.name, hypervisor.EventCrashed); n != 0 {
		t.Errorf("save/restore gave crashed events: %v", describe(e.events(e.name)))
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("save file gone after restores: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.save")
	if err := os.WriteFile(bad, []byte("not a save file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.hv.RestoreSnapshot(e.ctx, spec, bad); err == nil {
		t.Errorf("RestoreSnapshot of a corrupt file: no error")
		_ = e.hv.Stop(e.ctx, e.name, hypervisor.StopDestroy)
	}
}

// testPrepareSnapshot: PrepareSnapshot restores a save file paused (a
// warm domain: started, then suspended), refuses a domain that exists,
// and Resume runs it.
func testPrepareSnapshot(t *testing.T, e *env) {
	path := filepath.Join(t.TempDir(), "snap.save")
	spec := e.start(t, e.name)
	e.waitEvents(t, e.name, hypervisor.EventStarted)
	if err := e.hv.SaveSnapshot(e.ctx, e.name, path); err != nil {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	e.wantGone(t, e.name, hypervisor.StateShutoff)
	t0 := time.Now()
	if err := e.hv.PrepareSnapshot(e.ctx, spec, path); err != nil {
		t.Fatalf("PrepareSnapshot: %v", err)
	}
	t.Logf("restore paused took %v", time.Since(t0))
	e.wantState(t, e.name, hypervisor.StatePaused)
	e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventStopped, hypervisor.EventStarted, hypervisor.EventSuspended)
	wantErr(t, "PrepareSnapshot of a paused domain", e.hv.PrepareSnapshot(e.ctx, spec, path), hypervisor.ErrAlreadyRunning)
	t0 = time.Now()
	if err := e.hv.Resume(e.ctx, e.name); err != nil {
		t.Fatalf("Resume after PrepareSnapshot: %v", err)
	}
	t.Logf("resume took %v", time.Since(t0))
	e.wantState(t, e.name, hypervisor.StateRunning)
	if err := e.hv.Stop(e.ctx, e.name, hypervisor.StopDestroy); err != nil {
		t.Fatalf("Stop(destroy) after PrepareSnapshot: %v", err)
	}
	e.wantGone(t, e.name, hypervisor.StateShutoff)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("save file gone after PrepareSnapshot: %v", err)
	}
}

func testNotFound(t *testing.T, e *env) {
	name := e.name + "-missing"
	_, err := e.hv.State(e.ctx, name)
	wantErr(t, "State", err, hypervisor.ErrNotFound)
	wantErr(t, "Stop", e.hv.Stop(e.ctx, name, hypervisor.StopDestroy), hypervisor.ErrNotFound)
	wantErr(t, "Resume", e.hv.Resume(e.ctx, name), hypervisor.ErrNotFound)
	if _, ok := e.listed(t, name); ok {
		t.Errorf("List contains %q, which was never started", name)
	}
}

func testBadStopMode(t *testing.T, e *env) {
	e.start(t, e.name)
	if err := e.hv.Stop(e.ctx, e.name, hypervisor.StopMode("bogus")); err == nil {
		t.Fatal("Stop with mode \"bogus\" succeeded")
	}
	e.wantState(t, e.name, hypervisor.StateRunning)
}

func testForeign(t *testing.T, e *env) {
	if e.h.Foreign == nil {
		t.Skip("the harness cannot create a foreign domain")
	}
	name := e.h.Foreign(t, e.hv)
	_, err := e.hv.State(e.ctx, name)
	wantErr(t, "State of a foreign domain", err, hypervisor.ErrForeign)
	wantErr(t, "Stop of a foreign domain", e.hv.Stop(e.ctx, name, hypervisor.StopDestroy), hypervisor.ErrForeign)
	wantErr(t, "Resume of a foreign domain", e.hv.Resume(e.ctx, name), hypervisor.ErrForeign)
	wantErr(t, "Start over a foreign domain", e.hv.Start(e.ctx, e.h.Spec(t, name)), hypervisor.ErrForeign)
	if _, ok := e.listed(t, name); ok {
		t.Errorf("List contains the foreign domain %q", name)
	}
}

func testCrash(t *testing.T, e *env) {
	if e.h.Crash == nil {
		t.Skip("the harness cannot crash a domain")
	}
	e.start(t, e.name)
	e.waitEvents(t, e.name, hypervisor.EventStarted)
	t0 := time.Now()
	e.h.Crash(t, e.hv, e.name)
	evs := e.waitEvents(t, e.name, hypervisor.EventStarted, hypervisor.EventCrashed)
	t.Logf("crashed event (%s) arrived %v after the crash", evs[1].Detail, time.Since(t0))
	if n := e.count(e.name, hypervisor.EventStopped); n != 0 {
		t.Errorf("a crash was also reported as stopped: %v", describe(e.events(e.name)))
	}
	e.wantGone(t, e.name, hypervisor.StateCrashed, hypervisor.StateShutoff)
	// A crashed domain boots again.
	e.start(t, e.name)
	e.wantState(t, e.name, hypervisor.StateRunning)
}

func testConcurrentStart(t *testing.T, e *env) {
	spec := e.h.Spec(t, e.name)
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = e.hv.Start(e.ctx, spec) })
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, hypervisor.ErrAlreadyRunning):
			t.Errorf("Start #%d: %v, want nil or ErrAlreadyRunning", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent Starts succeeded, want exactly 1", ok, n)
	}
	e.waitEvents(t, e.name, hypervisor.EventStarted)
	if c := e.count(e.name, hypervisor.EventStarted); c != 1 {
		t.Errorf("%d started events, want 1", c)
	}
}

func testClose(t *testing.T, e *env) {
	e.start(t, e.name)
	e.waitEvents(t, e.name, hypervisor.EventStarted)
	_ = e.hv.Stop(e.ctx, e.name, hypervisor.StopDestroy)
	if err := e.hv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-e.done:
	case <-time.After(e.h.Timeout):
		t.Fatalf("Events channel not closed %v after Close", e.h.Timeout)
	}
	if err := e.hv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// guestPause is how long testGuestTime keeps a guest suspended or saved.
const guestPause = 3 * time.Second

// guestSkew is how far a guest's clock may be from the host's right after
// SetGuestTime (reading it takes a round trip to the guest).
const guestSkew = time.Second

// testGuestTime: without an agent SetGuestTime gives ErrNoAgent; with one,
// the guest's clock is behind after a suspend and after a save and
// restore, and SetGuestTime puts it right.
func testGuestTime(t *testing.T, e *env) {
	if e.h.GuestClock == nil {
		t.Skip("the harness cannot read a guest's clock (no GuestClock)")
	}
	wantErr(t, "SetGuestTime of a missing domain", e.hv.SetGuestTime(e.ctx, e.name+"-missing"), hypervisor.ErrNotFound)
	e.start(t, e.name) // Spec.Agent false
	wantErr(t, "SetGuestTime without an agent", e.hv.SetGuestTime(e.ctx, e.name), hypervisor.ErrNoAgent)
	if err := e.hv.Stop(e.ctx, e.name, hypervisor.StopDestroy); err != nil {
		t.Fatalf("Stop(destroy): %v", err)
	}
	e.wantGone(t, e.name, hypervisor.StateShutoff)

	spec := e.h.Spec(t, e.name)
	spec.Agent = true
	if err := e.hv.Start(e.ctx, spec); err != nil {
		t.Fatalf("Start with an agent: %v", err)
	}
	e.guestClock(t, spec) // waits for the guest
	e.setGuestTime(t, spec.Name)

	if err := e.hv.Stop(e.ctx, e.name, hypervisor.StopSuspend); err != nil {
		t.Fatalf("Stop(suspend): %v", err)
	}
	wantErr(t, "SetGuestTime of a paused domain", e.hv.SetGuestTime(e.ctx, e.name), hypervisor.ErrNotRunning)
	time.Sleep(guestPause)
	if err := e.hv.Resume(e.ctx, e.name); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	e.checkGuestTime(t, spec, "resume")

	if err := e.hv.Stop(e.ctx, e.name, hypervisor.StopSave); err != nil {
		t.Fatalf("Stop(save): %v", err)
	}
	e.wantState(t, e.name, hypervisor.StateSaved)
	time.Sleep(guestPause)
	if err := e.hv.Start(e.ctx, spec); err != nil {
		t.Fatalf("Start (restore): %v", err)
	}
	e.checkGuestTime(t, spec, "restore")
}

// checkGuestTime checks that the guest's clock is behind by about
// guestPause after a resume or restore (what), and right after
// SetGuestTime.
func (e *env) checkGuestTime(t *testing.T, spec hypervisor.Spec, what string) {
	t.Helper()
	lag := e.guestClock(t, spec)
	t.Logf("after %s: guest clock %v behind the host's", what, lag)
	if lag < guestPause/2 {
		t.Errorf("after %s: guest clock only %v behind the host's, want about %v (did it run while stopped?)", what, lag, guestPause)
	}
	e.setGuestTime(t, spec.Name)
	lag = e.guestClock(t, spec)
	t.Logf("after %s and SetGuestTime: guest clock %v behind the host's", what, lag)
	if lag > guestSkew || lag < -guestSkew {
		t.Errorf("after %s and SetGuestTime: guest clock %v off the host's, want within %v", what, lag, guestSkew)
	}
}

// guestClock returns how far the guest's clock is behind the host's,
// retrying until the guest answers or the harness timeout.
func (e *env) guestClock(t *testing.T, spec hypervisor.Spec) time.Duration {
	t.Helper()
	deadline := time.Now().Add(e.h.Timeout)
	for {
		before := time.Now()
		g, err := e.h.GuestClock(t, e.hv, spec)
		after := time.Now()
		if err == nil {
			// The guest read its clock somewhere in [before, after].
			return before.Add(after.Sub(before) / 2).Sub(g)
		}
		if time.Now().After(deadline) {
			t.Fatalf("read the guest clock of %q: %v", spec.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setGuestTime calls SetGuestTime, retrying while the agent is not
// (yet) answering.
func (e *env) setGuestTime(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(e.h.Timeout)
	for {
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		t0 := time.Now()
		err := e.hv.SetGuestTime(ctx, name)
		cancel()
		if err == nil {
			t.Logf("SetGuestTime took %v", time.Since(t0))
			return
		}
		if !errors.Is(err, hypervisor.ErrAgentUnresponsive) || time.Now().After(deadline) {
			t.Fatalf("SetGuestTime(%q): %v", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
