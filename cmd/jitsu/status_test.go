package main

import (
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/control"
)

func TestShownState(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	queued := now.Add(-3200 * time.Millisecond)
	for _, tc := range []struct {
		name string
		u    control.UnikernelStatus
		want string
	}{
		{"queued", control.UnikernelStatus{State: "starting", LastBoot: &control.BootTimeline{Queued: queued}}, "starting (queued 3.2s)"},
		{"left the queue", control.UnikernelStatus{State: "starting", LastBoot: &control.BootTimeline{Queued: queued, Start: now}}, "starting"},
		{"no timeline yet", control.UnikernelStatus{State: "starting"}, "starting"},
		{"ready", control.UnikernelStatus{State: "ready", LastBoot: &control.BootTimeline{Queued: queued}}, "ready"},
	} {
		if got := shownState(tc.u, now); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
