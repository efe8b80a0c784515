package libvirt

import (
	"fmt"
	"sync"
	"sync/atomic"

	lv "libvirt.org/go/libvirt"
)

// eventLoop runs libvirt's default event loop implementation on one
// goroutine for as long as at least one Hypervisor uses it. libvirt's
// default implementation is process-global and can be registered only once,
// so the loop is shared and reference counted: the last release stops the
// goroutine (it wakes the loop with a zero-delay timer and returns).
type eventLoop struct {
	mu      sync.Mutex // serialises acquire and release, held while stopping
	regErr  error
	regOnce sync.Once
	refs    int
	stop    *atomic.Bool
	done    chan struct{}
}

var loop eventLoop

// acquire makes sure the loop goroutine runs and counts one user.
func (l *eventLoop) acquire() error {
	l.regOnce.Do(func() {
		if err := lv.EventRegisterDefaultImpl(); err != nil {
			l.regErr = fmt.Errorf("register libvirt default event loop: %w", err)
		}
	})
	if l.regErr != nil {
		return l.regErr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refs++
	if l.refs == 1 {
		l.stop = new(atomic.Bool)
		l.done = make(chan struct{})
		go run(l.stop, l.done)
	}
	return nil
}

func run(stop *atomic.Bool, done chan struct{}) {
	defer close(done)
	for !stop.Load() {
		// Errors here are transient (EINTR); the loop simply iterates.
		_ = lv.EventRunDefaultImpl()
	}
}

// release drops one user; the last one stops the goroutine and waits for it.
func (l *eventLoop) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refs--
	if l.refs > 0 {
		return
	}
	l.stop.Store(true)
	// Wake the loop: a timer firing at once ends the current iteration.
	// The timer removes itself from inside its callback.
	if _, err := lv.EventAddTimeout(0, func(timer int) { _ = lv.EventRemoveTimeout(timer) }); err != nil {
		// Cannot wake it: keep it running rather than block forever.
		l.stop.Store(false)
		l.refs = 1
		return
	}
	<-l.done
}
