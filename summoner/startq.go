package summoner

import (
	"context"
	"sync"
	"time"
)

// startQueue bounds the boots in flight: at most max of them (0:
// unlimited) hold a slot, from their hypervisor call (Start, Resume or a
// restore) until they are ready or given up; the others wait, first come
// first served. It is bounded by the number of unikernels: each has at
// most one boot, so at most one ticket.
//
// It bounds concurrency, not the rate: admission control (Options.Admit)
// decides before whether a summon may boot at all, and the budget
// (MaxBooting) bounds how many may be starting, queued or not.
type startQueue struct {
	mu       sync.Mutex
	max      int
	inflight int
	waiting  []*startTicket // FIFO
	onChange func(inflight, waiting int)
}

// startTicket is one boot's place in the queue.
type startTicket struct {
	q        *startQueue
	granted  chan struct{} // closed when the boot may call the hypervisor
	state    ticketState   // q.mu
	queuedAt time.Time
}

type ticketState uint8

const (
	ticketWaiting ticketState = iota
	ticketGranted
	ticketDone
)

// enter queues a boot; it is granted at once if a slot is free and none
// waits.
func (q *startQueue) enter(now time.Time) *startTicket {
	t := &startTicket{q: q, granted: make(chan struct{}), queuedAt: now}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) == 0 && (q.max == 0 || q.inflight < q.max) {
		q.grantLocked(t)
	} else {
		q.waiting = append(q.waiting, t)
	}
	q.changedLocked()
	return t
}

func (q *startQueue) grantLocked(t *startTicket) {
	t.state = ticketGranted
	q.inflight++
	close(t.granted)
}

func (q *startQueue) changedLocked() {
	if q.onChange != nil {
		q.onChange(q.inflight, len(q.waiting))
	}
}

// wait blocks until t is granted (true) or ctx is done (false; the
// caller then leaves).
func (t *startTicket) wait(ctx context.Context) bool {
	select {
	case <-t.granted:
		return true
	case <-ctx.Done():
		return false
	}
}

// leave gives up t's place or its slot (the boot is ready, failed or was
// cancelled); the slot goes to the first waiting. It is idempotent.
func (t *startTicket) leave() {
	q := t.q
	q.mu.Lock()
	defer q.mu.Unlock()
	switch t.state {
	case ticketDone:
		return
	case ticketWaiting:
		for i, w := range q.waiting {
			if w == t {
				q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
				break
			}
		}
	case ticketGranted:
		q.inflight--
	}
	t.state = ticketDone
	for len(q.waiting) > 0 && (q.max == 0 || q.inflight < q.max) {
		next := q.waiting[0]
		q.waiting = q.waiting[1:]
		q.grantLocked(next)
	}
	q.changedLocked()
}

// counts returns the boots in flight and waiting.
func (q *startQueue) counts() (inflight, waiting int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inflight, len(q.waiting)
}
