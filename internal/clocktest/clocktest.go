// Package clocktest is a manually advanced clock for tests of code that
// takes a clock (such as the summoner's): time moves only when the test
// calls Advance, and due callbacks run in the test's goroutine.
package clocktest

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Timer is a pending AfterFunc call; it is identical to summoner.Timer.
type Timer = interface {
	// Stop prevents the call if it has not happened yet and reports
	// whether it did so.
	Stop() bool
}

// FakeClock is a manually advanced clock for tests. Time only moves when
// Advance is called; due AfterFunc callbacks then run, in time order, in the
// goroutine calling Advance. It is safe for concurrent use.
type FakeClock struct {
	mu      sync.Mutex
	now     time.Time
	seq     uint64
	timers  []*fakeTimer
	changed chan struct{}
}

type fakeTimer struct {
	c    *FakeClock
	when time.Time
	seq  uint64
	f    func()
}

// NewFakeClock returns a FakeClock set to start.
func NewFakeClock(start time.Time) *FakeClock {
	return &FakeClock{now: start, changed: make(chan struct{})}
}

// Now returns the clock's current time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc calls f once d has elapsed on this clock. A non-positive d still waits for the next
// Advance (of any duration, including 0).
func (c *FakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{c: c, when: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	c.signalLocked()
	return t
}

func (c *FakeClock) signalLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Stop prevents the call if it has not happened yet.
func (t *fakeTimer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			c.signalLocked()
			return true
		}
	}
	return false
}

// Advance moves the clock forward by d, running every callback that falls
// due, in order of due time; while a callback runs, Now returns its due time.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	for {
		sort.SliceStable(c.timers, func(i, j int) bool {
			if c.timers[i].when.Equal(c.timers[j].when) {
				return c.timers[i].seq < c.timers[j].seq
			}
			return c.timers[i].when.Before(c.timers[j].when)
		})
		if len(c.timers) == 0 || c.timers[0].when.After(target) {
			break
		}
		t := c.timers[0]
		c.timers = c.timers[1:]
		if t.when.After(c.now) {
			c.now = t.when
		}
		c.signalLocked()
		c.mu.Unlock()
		t.f()
		c.mu.Lock()
	}
	c.now = target
	c.signalLocked()
	c.mu.Unlock()
}

// Pending returns how many AfterFunc calls are waiting.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// WaitPending blocks until at least n AfterFunc calls are waiting or ctx is
// done, so that a test can advance the clock only once the code under test
// has armed its timers.
func (c *FakeClock) WaitPending(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		ok := len(c.timers) >= n
		ch := c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
