package summoner

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// snapUK is uk with Snapshot and a guest agent.
func snapUK(name, addr string) Unikernel {
	u := uk(name, addr)
	u.Snapshot = true
	u.Spec.Agent = true
	return u
}

// snapHarness runs a summoner over uks with a snapshot directory and
// guests that are ready as soon as they run.
func snapHarness(t *testing.T, uks ...Unikernel) (*harness, string) {
	dir := t.TempDir()
	h := newHarness(t, Options{SnapshotDir: dir, SnapshotSalt: "test"}, uks...)
	h.f.SetAutoReady(true)
	return h.run(), dir
}

// snapFiles lists the save files in dir.
func snapFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+snapshotExt))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

// coldStart summons name, waits for ready and returns its start mode.
func (h *harness) coldStart(name string) string {
	h.t.Helper()
	h.summon(name)
	h.waitState(name, StateReady)
	return h.status(name).LastBoot.Mode
}

// idleOut makes name idle out and waits until it is stopped.
func (h *harness) idleOut(name string) {
	h.t.Helper()
	h.clk.Advance(11 * time.Second)
	h.tick()
	h.waitState(name, StateStopped)
}

// TestSnapshotStart: the first cold start boots, saves the guest to its
// file and restores it before it is ready; later cold starts restore the
// file (mode snapshot), which stays, and set the guest's clock.
func TestSnapshotStart(t *testing.T) {
	h, dir := snapHarness(t, snapUK("a", "10.0.0.1"))
	if mode := h.coldStart("a"); mode != ModeBoot {
		t.Errorf("first start mode %q, want %q", mode, ModeBoot)
	}
	// The agent answers once before the save, and sets the clock after
	// the restore.
	want := []string{"start a", "set-time a", "save-snapshot a", "restore-snapshot a", "set-time a"}
	if got := h.calls(); !slices.Equal(got, want) {
		t.Errorf("first start calls %q, want %q", got, want)
	}
	files := snapFiles(t, dir)
	if len(files) != 1 || snapshotDomain(files[0]) != "a" {
		t.Fatalf("save files %q, want one of a", files)
	}
	for i := 2; i <= 3; i++ {
		h.idleOut("a")
		if got := h.calls()[len(h.calls())-1]; got != "stop a destroy" {
			t.Errorf("stop call %q, want a destroy", got)
		}
		if mode := h.coldStart("a"); mode != ModeSnapshot {
			t.Errorf("start %d mode %q, want %q", i, mode, ModeSnapshot)
		}
		if got := snapFiles(t, dir); !slices.Equal(got, files) {
			t.Errorf("start %d: save files %q, want %q kept", i, got, files)
		}
	}
	if n, r := h.countCalls("start a"), h.f.Restores("a"); n != 1 || r != 3 {
		t.Errorf("%d boots and %d restores, want 1 and 3: %q", n, r, h.calls())
	}
	if n := h.countCalls("set-time a"); n != 4 { // before the save, after each restore
		t.Errorf("%d set-time calls, want 4", n)
	}
	if c, _ := h.f.GuestClock("a"); time.Since(c).Abs() > time.Second {
		t.Errorf("restored guest's clock off by %v, want set to the host's", time.Since(c))
	}
	if got := h.metric("jitsu_unikernel_snapshot_ops_total", "unikernel", "a", "op", "save", "result", "ok"); got != 1 {
		t.Errorf("saves ok = %v, want 1", got)
	}
	if got := h.metric("jitsu_unikernel_snapshot_ops_total", "unikernel", "a", "op", "restore", "result", "ok"); got != 3 {
		t.Errorf("restores ok = %v, want 3", got)
	}
}

// TestSnapshotInvalidation: a reload that changes the spec removes the
// file at once, and the next start boots and makes a new one; a file of
// the unikernel with another hash is removed at a start; removing the
// unikernel from the config removes its file.
func TestSnapshotInvalidation(t *testing.T) {
	a := snapUK("a", "10.0.0.1")
	h, dir := snapHarness(t, a, snapUK("b", "10.0.0.2"))
	h.coldStart("a")
	h.idleOut("a")
	old := snapFiles(t, dir)
	a.Spec.Cmdline += " new"
	if err := h.s.Update([]Unikernel{a, snapUK("b", "10.0.0.2")}); err != nil {
		t.Fatal(err)
	}
	if got := snapFiles(t, dir); len(got) != 0 {
		t.Fatalf("save files after a spec change %q, want none", got)
	}
	if mode := h.coldStart("a"); mode != ModeBoot {
		t.Errorf("start after a spec change: mode %q, want %q", mode, ModeBoot)
	}
	cur := snapFiles(t, dir)
	if len(cur) != 1 || slices.Equal(cur, old) {
		t.Fatalf("save files %q, want one new (old %q)", cur, old)
	}
	if spec, _ := h.f.Spec("a"); spec.Cmdline != a.Spec.Cmdline {
		t.Errorf("restored cmdline %q, want %q", spec.Cmdline, a.Spec.Cmdline)
	}
	// A stale file of a (another hash) is removed at its next start.
	h.idleOut("a")
	stale := filepath.Join(dir, "a-0123456789abcdef"+snapshotExt)
	if err := os.WriteFile(stale, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if mode := h.coldStart("a"); mode != ModeSnapshot {
		t.Errorf("mode %q, want %q", mode, ModeSnapshot)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale file still there: %v", err)
	}
	// Removal from the config removes the file (b, never started, has none).
	if err := h.s.Update([]Unikernel{snapUK("b", "10.0.0.2")}); err != nil {
		t.Fatal(err)
	}
	if got := snapFiles(t, dir); len(got) != 0 {
		t.Errorf("save files after removal %q, want none", got)
	}
}

// TestSnapshotRestoreFails: a file that fails to restore is discarded and
// the unikernel boots (once, no loop); the next start makes a new file.
func TestSnapshotRestoreFails(t *testing.T) {
	h, dir := snapHarness(t, snapUK("a", "10.0.0.1"))
	h.coldStart("a")
	h.idleOut("a")
	h.f.FailRestore("a", errors.New("incompatible save file"))
	if mode := h.coldStart("a"); mode != ModeBoot {
		t.Errorf("start after a failed restore: mode %q, want %q", mode, ModeBoot)
	}
	if got := snapFiles(t, dir); len(got) != 0 {
		t.Errorf("save files after a failed restore %q, want none", got)
	}
	if n := h.countCalls("restore-snapshot a"); n != 2 {
		t.Errorf("%d restores, want 2 (one after the save, one failed)", n)
	}
	if got := h.metric("jitsu_unikernel_snapshot_ops_total", "unikernel", "a", "op", "restore", "result", "error"); got != 1 {
		t.Errorf("restores error = %v, want 1", got)
	}
	h.idleOut("a")
	h.coldStart("a")
	if n := h.countCalls("save-snapshot a"); n != 2 || len(snapFiles(t, dir)) != 1 {
		t.Errorf("%d saves, files %q; want a second save and one file", n, snapFiles(t, dir))
	}
}

// TestSnapshotNoAgent: a restored guest whose clock cannot be set (no
// guest agent) still starts; the failure is counted.
func TestSnapshotNoAgent(t *testing.T) {
	a := snapUK("a", "10.0.0.1")
	a.Spec.Agent = false
	h, _ := snapHarness(t, a)
	h.coldStart("a")
	h.idleOut("a")
	if mode := h.coldStart("a"); mode != ModeSnapshot {
		t.Errorf("mode %q, want %q", mode, ModeSnapshot)
	}
	if got := h.metric("jitsu_unikernel_guest_time_failures_total", "unikernel", "a"); got != 2 {
		t.Errorf("guest time failures = %v, want 2 (after the first save and after the restore)", got)
	}
	if c, _ := h.f.GuestClock("a"); time.Since(c) <= 0 {
		t.Errorf("guest clock %v not behind the host's: set without an agent?", c)
	}
}

// TestSnapshotAgentLate: just after a restore libvirt may not see the
// guest's agent yet; setting the clock is retried until it does.
func TestSnapshotAgentLate(t *testing.T) {
	h, _ := snapHarness(t, snapUK("a", "10.0.0.1"))
	h.coldStart("a")
	h.idleOut("a")
	h.f.AgentLate("a", 3)
	if mode := h.coldStart("a"); mode != ModeSnapshot {
		t.Errorf("mode %q, want %q", mode, ModeSnapshot)
	}
	if n := h.countCalls("set-time a"); n != 6 { // before and after the save, four after the restore
		t.Errorf("%d set-time calls, want 6: %q", n, h.calls())
	}
	if got := h.metric("jitsu_unikernel_guest_time_failures_total", "unikernel", "a"); got != 0 {
		t.Errorf("guest time failures = %v, want 0", got)
	}
	if c, _ := h.f.GuestClock("a"); time.Since(c).Abs() > time.Second {
		t.Errorf("restored guest's clock off by %v, want set", time.Since(c))
	}
}

// TestSnapshotBroken: a file that cannot be restored right after it was
// saved is discarded, the unikernel boots, and no file is made again for
// that spec; a failed save carries on with the running guest.
func TestSnapshotBroken(t *testing.T) {
	h, dir := snapHarness(t, snapUK("a", "10.0.0.1"), snapUK("b", "10.0.0.2"))
	h.f.FailRestore("a", errors.New("cannot restore"))
	if mode := h.coldStart("a"); mode != ModeBoot {
		t.Errorf("mode %q, want %q", mode, ModeBoot)
	}
	h.idleOut("a")
	if mode := h.coldStart("a"); mode != ModeBoot {
		t.Errorf("second start: mode %q, want %q", mode, ModeBoot)
	}
	if n := h.countCalls("save-snapshot a"); n != 1 {
		t.Errorf("%d saves, want 1 (snapshots off for this spec)", n)
	}
	h.f.FailSave("b", errors.New("disk full"))
	h.coldStart("b")
	if n := h.countCalls("start b"); n != 1 {
		t.Errorf("b booted %d times after a failed save, want 1 (carried on)", n)
	}
	if got := snapFiles(t, dir); len(got) != 0 {
		t.Errorf("save files %q, want none", got)
	}
}

// TestSnapshotConfig: snapshot conflicts with the stop modes that keep
// the domain, not with warm, and needs a snapshot directory.
func TestSnapshotConfig(t *testing.T) {
	w := snapUK("a", "10.0.0.1")
	w.Warm = true
	if _, err := normalize([]Unikernel{w}); err != nil {
		t.Errorf("normalize refused snapshot with warm: %v", err)
	}
	for _, mode := range []hypervisor.StopMode{hypervisor.StopSave, hypervisor.StopSuspend} {
		s := snapUK("a", "10.0.0.1")
		s.StopMode = mode
		if _, err := normalize([]Unikernel{s}); err == nil {
			t.Errorf("normalize accepted snapshot with stop mode %s", mode)
		}
	}
	if _, err := New(Options{Hypervisor: newHarness(t, Options{}).f}, []Unikernel{snapUK("a", "10.0.0.1")}); err == nil {
		t.Error("New accepted a snapshot unikernel without a snapshot directory")
	}
}

// TestWarmSnapshot: a warm snapshot unikernel has no warm domain until
// its first boot made the save file; from then on its warm domain is the
// file restored paused, and a summon resumes it (mode warm-snapshot) and
// sets the guest's clock before it is ready. The pool is refilled the
// same way after each stop.
func TestWarmSnapshot(t *testing.T) {
	u := snapUK("a", "10.0.0.1")
	u.Warm = true
	h := newHarness(t, Options{SnapshotDir: t.TempDir(), SnapshotSalt: "test", WarmMax: 1}, u)
	h.f.SetAutoReady(true)
	h.run()
	h.settle()
	if st := h.status("a").State; st != StateStopped || h.countCalls("prepare a")+h.countCalls("prepare-snapshot a") != 0 {
		t.Fatalf("before any save file: a is %s after %q, want stopped and nothing prepared", st, h.calls())
	}
	if mode := h.coldStart("a"); mode != ModeBoot {
		t.Errorf("first start mode %q, want %q", mode, ModeBoot)
	}
	for i := 1; i <= 2; i++ {
		h.clk.Advance(11 * time.Second) // idles out, and is refilled
		h.tick()
		h.waitState("a", StateWarm)
		if st := h.f.StateOf("a"); st != hypervisor.StatePaused {
			t.Fatalf("warm domain of a is %s, want paused", st)
		}
		if n := h.countCalls("prepare-snapshot a"); n != i {
			t.Fatalf("%d paused restores after %d stops, want %d: %q", n, i, i, h.calls())
		}
		if mode := h.coldStart("a"); mode != ModeWarmSnapshot {
			t.Errorf("start %d mode %q, want %q", i+1, mode, ModeWarmSnapshot)
		}
		calls := h.calls()
		if got := calls[len(calls)-2:]; !slices.Equal(got, []string{"resume a", "set-time a"}) {
			t.Errorf("start %d: last calls %q, want a resume then set-time", i+1, got)
		}
		if c, _ := h.f.GuestClock("a"); time.Since(c).Abs() > time.Second {
			t.Errorf("start %d: guest's clock off by %v, want set to the host's", i+1, time.Since(c))
		}
	}
	if n, p := h.countCalls("start a"), h.countCalls("prepare a"); n != 1 || p != 0 {
		t.Errorf("%d boots and %d prepares of a paused-before-boot domain, want 1 and 0: %q", n, p, h.calls())
	}
}

// TestWarmSnapshotBadFile: a save file that cannot be restored paused is
// discarded; the next start boots and makes a new one.
func TestWarmSnapshotBadFile(t *testing.T) {
	u := snapUK("a", "10.0.0.1")
	u.Warm = true
	dir := t.TempDir()
	h := newHarness(t, Options{SnapshotDir: dir, SnapshotSalt: "test", WarmMax: 1}, u)
	h.f.SetAutoReady(true)
	h.run()
	h.coldStart("a")
	h.f.FailRestore("a", errors.New("incompatible save file"))
	h.idleOut("a")
	h.settle()
	if got := snapFiles(t, dir); len(got) != 0 {
		t.Errorf("save files %q after a failed paused restore, want none", got)
	}
	if st := h.status("a").State; st != StateStopped {
		t.Errorf("a is %s, want stopped", st)
	}
	if mode := h.coldStart("a"); mode != ModeBoot {
		t.Errorf("start after the failure: mode %q, want %q", mode, ModeBoot)
	}
	if got := snapFiles(t, dir); len(got) != 1 {
		t.Errorf("save files %q after the boot, want a new one", got)
	}
}
