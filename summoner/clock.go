package summoner

import (
	"context"
	"time"
)

// Clock is the summoner's source of time: idle-out, backoff, boot timeouts,
// probe pacing and the response delay all use it, so that tests can drive
// them with a fake clock (internal/clocktest) instead of sleeping.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or, for a fake clock, in
	// the goroutine that advances it) once d has elapsed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
// It is an alias of an unnamed interface so that clocks outside this
// package (internal/clocktest's) implement Clock without importing it.
type Timer = interface {
	// Stop prevents the call if it has not happened yet and reports
	// whether it did so.
	Stop() bool
}

// RealClock returns the wall clock.
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// sleep waits for d on c, or until ctx is done (then it returns ctx.Err()).
func sleep(ctx context.Context, c Clock, d time.Duration) error {
	ch := make(chan struct{})
	t := c.AfterFunc(d, func() { close(ch) })
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}
