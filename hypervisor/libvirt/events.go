package libvirt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	lv "libvirt.org/go/libvirt"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// rawEvent is a libvirt lifecycle event already classified on the event
// loop; jitsu marks whether the domain is known to be jitsu's.
type rawEvent struct {
	ev    hypervisor.Event
	known bool
}

// eventQueue is a bounded FIFO between the libvirt event loop (which must
// never block) and the dispatcher goroutine.
type eventQueue struct {
	mu     sync.Mutex
	items  []rawEvent
	max    int
	signal chan struct{}
	done   chan struct{}
	once   sync.Once
}

func newEventQueue(max int) *eventQueue {
	return &eventQueue{max: max, signal: make(chan struct{}, 1), done: make(chan struct{})}
}

// push appends e; it reports false if the queue is full and e was dropped.
func (q *eventQueue) push(e rawEvent) bool {
	q.mu.Lock()
	if len(q.items) >= q.max {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, e)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
	return true
}

// pop waits for the next event; ok is false once the queue is closed.
func (q *eventQueue) pop() (rawEvent, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			e := q.items[0]
			q.items[0] = rawEvent{}
			q.items = q.items[1:]
			q.mu.Unlock()
			return e, true
		}
		q.mu.Unlock()
		select {
		case <-q.signal:
		case <-q.done:
			return rawEvent{}, false
		}
	}
}

func (q *eventQueue) close() { q.once.Do(func() { close(q.done) }) }

// classify maps a libvirt lifecycle event to a hypervisor event kind.
// requested says whether jitsu asked for a stop that has not been reported
// yet. ok is false for events jitsu does not report (defined, undefined,
// the CRASHED notice that precedes STOPPED/CRASHED with on_crash=destroy).
func classify(e *lv.DomainEventLifecycle, requested bool) (kind hypervisor.EventKind, detail string, ok bool) {
	switch e.Event {
	case lv.DOMAIN_EVENT_STARTED:
		switch lv.DomainEventStartedDetailType(e.Detail) {
		case lv.DOMAIN_EVENT_STARTED_RESTORED:
			return hypervisor.EventStarted, "restored", true
		case lv.DOMAIN_EVENT_STARTED_MIGRATED:
			return hypervisor.EventStarted, "migrated", true
		case lv.DOMAIN_EVENT_STARTED_FROM_SNAPSHOT:
			return hypervisor.EventStarted, "from-snapshot", true
		case lv.DOMAIN_EVENT_STARTED_WAKEUP:
			return hypervisor.EventStarted, "wakeup", true
		}
		return hypervisor.EventStarted, "booted", true
	case lv.DOMAIN_EVENT_SUSPENDED:
		switch lv.DomainEventSuspendedDetailType(e.Detail) {
		case lv.DOMAIN_EVENT_SUSPENDED_PAUSED:
			return hypervisor.EventSuspended, "paused", true
		case lv.DOMAIN_EVENT_SUSPENDED_RESTORED:
			// A restore that leaves the domain paused (PrepareSnapshot).
			return hypervisor.EventSuspended, "paused", true
		case lv.DOMAIN_EVENT_SUSPENDED_IOERROR:
			return hypervisor.EventSuspended, "io-error", true
		case lv.DOMAIN_EVENT_SUSPENDED_WATCHDOG:
			return hypervisor.EventSuspended, "watchdog", true
		case lv.DOMAIN_EVENT_SUSPENDED_API_ERROR:
			return hypervisor.EventSuspended, "api-error", true
		}
		// Pauses that are part of a save or migration are not reported:
		// the STOPPED event that follows says what happened.
		return 0, "", false
	case lv.DOMAIN_EVENT_PMSUSPENDED:
		return hypervisor.EventSuspended, "pm-suspended", true
	case lv.DOMAIN_EVENT_RESUMED:
		switch lv.DomainEventResumedDetailType(e.Detail) {
		case lv.DOMAIN_EVENT_RESUMED_UNPAUSED:
			return hypervisor.EventResumed, "unpaused", true
		case lv.DOMAIN_EVENT_RESUMED_FROM_SNAPSHOT:
			return hypervisor.EventResumed, "from-snapshot", true
		}
		// Resumes after a failed save or migration step.
		return 0, "", false
	case lv.DOMAIN_EVENT_STOPPED:
		switch lv.DomainEventStoppedDetailType(e.Detail) {
		case lv.DOMAIN_EVENT_STOPPED_SHUTDOWN:
			if requested {
				return hypervisor.EventStopped, "shutdown", true
			}
			// The guest powered off or rebooted (on_reboot=destroy) on
			// its own: a kernel panic with panic=-1, or /init exiting.
			return hypervisor.EventCrashed, "guest-shutdown", true
		case lv.DOMAIN_EVENT_STOPPED_DESTROYED:
			return hypervisor.EventStopped, "destroyed", true
		case lv.DOMAIN_EVENT_STOPPED_CRASHED:
			return hypervisor.EventCrashed, "panicked", true
		case lv.DOMAIN_EVENT_STOPPED_FAILED:
			return hypervisor.EventCrashed, "failed", true
		case lv.DOMAIN_EVENT_STOPPED_SAVED:
			return hypervisor.EventStopped, "saved", true
		case lv.DOMAIN_EVENT_STOPPED_MIGRATED:
			return hypervisor.EventStopped, "migrated", true
		case lv.DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT:
			return hypervisor.EventStopped, "from-snapshot", true
		}
		return hypervisor.EventStopped, "unknown", true
	}
	return 0, "", false
}

// onLifecycle runs on the libvirt event loop: it classifies the event with
// what jitsu knows now and queues it, never blocking.
func (h *Hypervisor) onLifecycle(_ *lv.Connect, d *lv.Domain, e *lv.DomainEventLifecycle) {
	now := time.Now()
	name, err := d.GetName()
	if err != nil {
		return
	}
	h.mu.Lock()
	info, known := h.known[name]
	requested := false
	if known && e.Event == lv.DOMAIN_EVENT_STOPPED {
		requested = info.stopsPending > 0
		if requested {
			info.stopsPending--
		}
	}
	kind, detail, ok := classify(e, requested)
	if known {
		switch {
		case e.Event == lv.DOMAIN_EVENT_SUSPENDED && info.saving:
			ok = false // the pause that starts a managed save
		case kind == hypervisor.EventSuspended && ok:
			info.suspended = true
		case kind == hypervisor.EventResumed && ok:
			ok = info.suspended // not the first resume of a boot or restore
			info.suspended = false
		case e.Event == lv.DOMAIN_EVENT_STARTED:
			info.started = now
			info.suspended = false
		case e.Event == lv.DOMAIN_EVENT_STOPPED:
			info.suspended, info.saving = false, false
		}
	}
	h.mu.Unlock()
	h.log.Debug("libvirt lifecycle event", zap.String("domain", name), zap.Int("event", int(e.Event)), zap.Int("detail", e.Detail), zap.Bool("reported", ok))
	if !ok {
		return
	}
	if !h.queue.push(rawEvent{ev: hypervisor.Event{Name: name, Kind: kind, Time: now, Detail: detail}, known: known}) {
		h.log.Warn("event queue full, event dropped", zap.String("domain", name), zap.Stringer("kind", kind))
		h.m.dropped.Inc()
	}
}

// dispatch delivers queued events of jitsu's domains to Events.
func (h *Hypervisor) dispatch() {
	defer h.wg.Done()
	for {
		re, ok := h.queue.pop()
		if !ok {
			return
		}
		if !re.known && !h.isJitsu(re.ev.Name) {
			continue
		}
		h.m.events.WithLabelValues(re.ev.Kind.String()).Inc()
		select {
		case h.events <- re.ev:
		case <-h.ctx.Done():
			return
		}
	}
}

// isJitsu looks up whether a domain jitsu did not know about is one of its
// own (created by an earlier run of jitsu).
func (h *Hypervisor) isJitsu(name string) bool {
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	err := h.call(ctx, "check", name, func() error {
		conn, err := h.acquire()
		if err != nil {
			return err
		}
		defer release(conn)
		d, _, err := h.lookup(conn, "check", name)
		if err != nil {
			return err
		}
		_ = d.Free()
		return nil
	})
	return err == nil
}

// metrics are the backend's Prometheus collectors.
type metrics struct {
	starts     *prometheus.CounterVec
	startSecs  prometheus.Histogram
	events     *prometheus.CounterVec
	dropped    prometheus.Counter
	reconnects prometheus.Counter
	// callTimeouts counts calls whose caller's deadline passed first.
	callTimeouts prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_hypervisor_starts_total", Help: "Domain starts by result.",
		}, []string{"result"}),
		startSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jitsu_hypervisor_start_seconds", Help: "Duration of the libvirt start call.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_hypervisor_events_total", Help: "Lifecycle events delivered, by kind.",
		}, []string{"kind"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitsu_hypervisor_events_dropped_total", Help: "Lifecycle events dropped because the queue was full.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitsu_hypervisor_reconnects_total", Help: "Reconnections to libvirt after an outage.",
		}),
		callTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitsu_hypervisor_call_timeouts_total", Help: "libvirt calls still running when their caller's deadline passed.",
		}),
	}
	if reg != nil {
		// A second backend on the same registry (jitsu retrying its first
		// connection) shares the collectors already registered.
		var errs []error
		m.starts, errs = register(reg, m.starts, errs)
		m.startSecs, errs = register(reg, m.startSecs, errs)
		m.events, errs = register(reg, m.events, errs)
		m.dropped, errs = register(reg, m.dropped, errs)
		m.reconnects, errs = register(reg, m.reconnects, errs)
		m.callTimeouts, errs = register(reg, m.callTimeouts, errs)
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("register hypervisor metrics: %w", err)
		}
	}
	return m, nil
}

// register registers c with reg, or returns the equal collector already
// registered there; a failure is appended to errs.
func register[T prometheus.Collector](reg prometheus.Registerer, c T, errs []error) (T, []error) {
	err := reg.Register(c)
	if err == nil {
		return c, errs
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, errs
		}
	}
	return c, append(errs, err)
}

func (m *metrics) observeStart(t0 time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.starts.WithLabelValues(result).Inc()
	if err == nil {
		m.startSecs.Observe(time.Since(t0).Seconds())
	}
}
