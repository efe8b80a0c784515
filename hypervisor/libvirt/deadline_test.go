package libvirt

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// newCallTester is a backend with nothing but what call needs.
func newCallTester(t *testing.T, slots int) *Hypervisor {
	t.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Hypervisor{log: zap.NewNop(), m: m, calls: make(chan struct{}, slots)}
}

// TestCallDeadline: a call that hangs (a hung libvirtd) returns when its
// caller's context ends, with the context's error; a hung call keeps its
// slot, so with every slot taken the next call waits within its own
// deadline; once the hung calls return, the slots are free again.
func TestCallDeadline(t *testing.T) {
	h := newCallTester(t, 2)
	hang := make(chan struct{})
	hung := func() error { <-hang; return nil }
	for _, tt := range []struct {
		name string
		fn   func() error
		want string
	}{
		{"answers", func() error { return errors.New("boom") }, "boom"},
		{"hangs", hung, "no answer from libvirt in time"},
		{"hangs again", hung, "no answer from libvirt in time"},
		{"no slot left", func() error { return nil }, "2 libvirt calls in flight"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			err := h.call(ctx, "start", "www", tt.fn)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("call: %v, want an error containing %q", err, tt.want)
			}
			if tt.fn != nil && tt.want != "boom" && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("call: %v, want it to wrap the context's error", err)
			}
		})
	}
	close(hang)
	h.inflight.Wait()
	if err := h.call(context.Background(), "state of", "www", func() error { return nil }); err != nil {
		t.Errorf("call after the hung calls returned: %v", err)
	}
}
