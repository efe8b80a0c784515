package hvtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newFake(t *testing.T) *Fake {
	t.Helper()
	f := New()
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func nextEvent(t *testing.T, f *Fake) hypervisor.Event {
	t.Helper()
	select {
	case ev := <-f.Events():
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
		return hypervisor.Event{}
	}
}

func TestLifecycle(t *testing.T) {
	f := newFake(t)
	ctx := testCtx(t)
	spec := hypervisor.Spec{Name: "web"}
	steps := []struct {
		name  string
		do    func() error
		err   error
		state hypervisor.State
		event hypervisor.EventKind // 0: none
	}{
		{"start", func() error { return f.Start(ctx, spec) }, nil, hypervisor.StateRunning, hypervisor.EventStarted},
		{"start again", func() error { return f.Start(ctx, spec) }, hypervisor.ErrAlreadyRunning, hypervisor.StateRunning, 0},
		{"suspend", func() error { return f.Stop(ctx, "web", hypervisor.StopSuspend) }, nil, hypervisor.StatePaused, hypervisor.EventSuspended},
		{"resume", func() error { return f.Resume(ctx, "web") }, nil, hypervisor.StateRunning, hypervisor.EventResumed},
		{"resume running", func() error { return f.Resume(ctx, "web") }, hypervisor.ErrNotRunning, hypervisor.StateRunning, 0},
		{"save", func() error { return f.Stop(ctx, "web", hypervisor.StopSave) }, nil, hypervisor.StateSaved, hypervisor.EventStopped},
		{"stop saved", func() error { return f.Stop(ctx, "web", hypervisor.StopDestroy) }, hypervisor.ErrNotRunning, hypervisor.StateSaved, 0},
		{"restore", func() error { return f.Start(ctx, spec) }, nil, hypervisor.StateRunning, hypervisor.EventStarted},
		{"shutdown", func() error { return f.Stop(ctx, "web", hypervisor.StopShutdown) }, nil, hypervisor.StateShutoff, hypervisor.EventStopped},
		{"start shutoff", func() error { return f.Start(ctx, spec) }, nil, hypervisor.StateRunning, hypervisor.EventStarted},
		{"destroy", func() error { return f.Stop(ctx, "web", hypervisor.StopDestroy) }, nil, hypervisor.StateShutoff, hypervisor.EventStopped},
		{"bad mode", func() error { return f.Stop(ctx, "web", "nap") }, nil, hypervisor.StateShutoff, 0},
	}
	for _, s := range steps {
		err := s.do()
		if s.name == "bad mode" {
			if err == nil {
				t.Fatalf("%s: no error", s.name)
			}
		} else if !errors.Is(err, s.err) || (s.err == nil && err != nil) {
			t.Fatalf("%s: err %v, want %v", s.name, err, s.err)
		}
		if got := f.StateOf("web"); got != s.state {
			t.Fatalf("%s: state %s, want %s", s.name, got, s.state)
		}
		if s.event != 0 {
			if ev := nextEvent(t, f); ev.Kind != s.event || ev.Name != "web" {
				t.Fatalf("%s: event %v, want %s", s.name, ev, s.event)
			}
		}
	}
	if got := f.Starts("web"); got != 3 {
		t.Fatalf("Starts = %d, want 3 (boot, restore, boot)", got)
	}
	select {
	case ev := <-f.Events():
		t.Fatalf("unexpected event %v", ev)
	default:
	}
}

func TestScripting(t *testing.T) {
	f := newFake(t)
	ctx := testCtx(t)
	boom := errors.New("boom")
	f.FailStart("a", boom)
	if err := f.Start(ctx, hypervisor.Spec{Name: "a"}); !errors.Is(err, boom) {
		t.Fatalf("FailStart: %v", err)
	}
	if err := f.Start(ctx, hypervisor.Spec{Name: "a"}); err != nil {
		t.Fatalf("second start: %v", err)
	}
	nextEvent(t, f)
	if !f.Crash("a") {
		t.Fatal("Crash of a running domain reported false")
	}
	if ev := nextEvent(t, f); ev.Kind != hypervisor.EventCrashed {
		t.Fatalf("event %v, want crashed", ev)
	}
	if f.Crash("a") {
		t.Fatal("Crash of a crashed domain reported true")
	}

	f.AddForeign("other")
	if err := f.Start(ctx, hypervisor.Spec{Name: "other"}); !errors.Is(err, hypervisor.ErrForeign) {
		t.Fatalf("start foreign: %v", err)
	}
	doms, err := f.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range doms {
		if d.Name == "other" {
			t.Fatal("foreign domain listed")
		}
	}
	if _, err := f.State(ctx, "nope"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("State unknown: %v", err)
	}

	f.SetUnavailable(true)
	if _, err := f.List(ctx); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Fatalf("List unavailable: %v", err)
	}
	f.SetUnavailable(false)

	f.SetStats("a", hypervisor.InterfaceStats{RxBytes: 5})
	f.AddTraffic("a", 10)
	st, err := f.InterfaceStats(ctx, "a")
	if err != nil || st.RxBytes != 15 || st.TxPackets != 1 {
		t.Fatalf("stats %+v %v", st, err)
	}
}

func TestWaiters(t *testing.T) {
	f := newFake(t)
	ctx := testCtx(t)
	errc := make(chan error, 2)
	go func() { errc <- f.WaitStarts(ctx, "w", 1) }()
	go func() { errc <- f.WaitReady(ctx, "w") }()
	if err := f.Start(ctx, hypervisor.Spec{Name: "w"}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("WaitStarts: %v", err)
	}
	f.SetReady("w", true)
	if err := <-errc; err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	// readiness survives suspend, is reset by destroy
	if err := f.Stop(ctx, "w", hypervisor.StopSuspend); err != nil {
		t.Fatal(err)
	}
	if err := f.Resume(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	if err := f.WaitReady(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	if err := f.Stop(ctx, "w", hypervisor.StopDestroy); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithCancel(ctx)
	cancel()
	if err := f.WaitReady(short, "w"); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitReady after destroy: %v", err)
	}
	if got := len(f.Calls()); got != 4 {
		t.Fatalf("%d calls recorded, want 4", got)
	}
}

func TestCloseClosesEvents(t *testing.T) {
	f := New()
	if err := f.Start(context.Background(), hypervisor.Spec{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for range f.Events() {
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := f.Start(context.Background(), hypervisor.Spec{Name: "x"}); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Fatalf("Start after Close: %v", err)
	}
}

// TestHangStart: a Start held by HangStart is in flight (WaitHanging)
// until released, or fails with its context's error when that ends first.
func TestHangStart(t *testing.T) {
	f := newFake(t)
	ctx := testCtx(t)
	release := f.HangStart("w")
	errc := make(chan error, 1)
	go func() { errc <- f.Start(ctx, hypervisor.Spec{Name: "w"}) }()
	if err := f.WaitHanging(ctx, "w", 1); err != nil {
		t.Fatal(err)
	}
	if st := f.StateOf("w"); st == hypervisor.StateRunning {
		t.Fatalf("a hung start's domain is %s", st)
	}
	release()
	if err := <-errc; err != nil {
		t.Fatalf("released Start: %v", err)
	}
	if st := f.StateOf("w"); st != hypervisor.StateRunning {
		t.Fatalf("released start's domain is %s, want running", st)
	}

	release = f.HangStart("x")
	defer release()
	short, cancel := context.WithCancel(ctx)
	go func() { errc <- f.Start(short, hypervisor.Spec{Name: "x"}) }()
	if err := f.WaitHanging(ctx, "x", 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled hung Start: %v, want context.Canceled", err)
	}
	if err := f.WaitHanging(short, "x", 1); err == nil {
		t.Fatal("WaitHanging reported a start that returned")
	}
}

// TestHangStop: a Stop held by HangStop is in flight (WaitHanging) and
// leaves the domain running until released; one whose context ends first
// fails with its error and changes nothing.
func TestHangStop(t *testing.T) {
	f := newFake(t)
	ctx := testCtx(t)
	if err := f.Start(ctx, hypervisor.Spec{Name: "w"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		expire  bool
		wantErr error
		want    hypervisor.State
	}{
		{"context ends first", true, context.Canceled, hypervisor.StateRunning},
		{"released", false, nil, hypervisor.StateShutoff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := f.HangStop("w")
			defer release()
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- f.Stop(sctx, "w", hypervisor.StopDestroy) }()
			if err := f.WaitHanging(ctx, "w", 1); err != nil {
				t.Fatal(err)
			}
			if st := f.StateOf("w"); st != hypervisor.StateRunning {
				t.Fatalf("domain during a hung stop: %s, want running", st)
			}
			if tc.expire {
				cancel()
			} else {
				release()
			}
			if err := <-errc; !errors.Is(err, tc.wantErr) {
				t.Fatalf("Stop: %v, want %v", err, tc.wantErr)
			}
			if st := f.StateOf("w"); st != tc.want {
				t.Fatalf("domain after the stop: %s, want %s", st, tc.want)
			}
		})
	}
}
