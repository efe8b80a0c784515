package summoner

import "testing"

// TestWaitReady: nil when no boot is under way; a channel that closes when
// the boot settles, ready or failed; Summon does not wait (the DNS server
// holds the answer with WaitReady).
func TestWaitReady(t *testing.T) {
	h := newHarness(t, Options{}, uk("web", "10.0.0.1")).run()
	if ch := h.s.WaitReady("web"); ch != nil {
		t.Fatal("a channel although no boot is under way")
	}
	if ch := h.s.WaitReady("nosuch"); ch != nil {
		t.Fatal("a channel for an unknown unikernel")
	}
	if _, err := h.s.Summon(h.ctx, "web"); err != nil {
		t.Fatal(err)
	}
	ch := h.s.WaitReady("web")
	if ch == nil {
		t.Fatal("no channel while booting")
	}
	select {
	case <-ch:
		t.Fatal("closed before the boot settled")
	default:
	}
	h.waitStarts("web", 1)
	h.f.SetReady("web", true)
	select {
	case <-ch:
	case <-h.ctx.Done():
		t.Fatal("not closed once ready")
	}
	if st := h.status("web").State; st != StateReady {
		t.Fatalf("state %s after the channel closed", st)
	}
	if ch := h.s.WaitReady("web"); ch != nil {
		t.Fatal("a channel although the unikernel is ready")
	}
}
