package dnsserver

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Response delay (Jitsu's mode without the SYN proxy): the answer for a
// booting unikernel waits until it is ready, its boot fails, or the delay
// passes. UDP queries waiting so are parked in a bounded list per
// unikernel and answered by one goroutine per list; no reader ever waits.
// Over TCP the connection's own goroutine waits.

// Waiter is optionally implemented by the Summoner; response delay needs it.
type Waiter interface {
	// WaitReady returns a channel closed when the boot of the unikernel
	// under way settles (ready or failed), nil if no boot is under way.
	// It never blocks.
	WaitReady(unikernel string) <-chan struct{}
}

// Bounds of the parked queries.
const (
	maxParkedPerUnikernel = 256
	maxParked             = 4096
)

type parkedQuery struct {
	req  []byte
	addr net.Addr
	conn *net.UDPConn
}

// delayer holds the parked queries.
type delayer struct {
	s      *Server
	delay  time.Duration
	waiter Waiter

	mu     sync.Mutex
	lists  map[string][]parkedQuery
	total  int
	parked prometheus.Counter
	full   prometheus.Counter
}

func newDelayer(s *Server, delay time.Duration) *delayer {
	d := &delayer{s: s, delay: delay, lists: map[string][]parkedQuery{}}
	d.waiter, _ = s.opts.Summoner.(Waiter)
	d.parked = s.hard.met.delayed.WithLabelValues("parked")
	d.full = s.hard.met.delayed.WithLabelValues("list_full")
	return d
}

// on reports whether answers may be delayed.
func (d *delayer) on() bool { return d != nil && d.delay > 0 && d.waiter != nil }

// unikernelOf returns the unikernel whose addresses answer req ("" if none).
func (d *delayer) unikernelOf(snap *snapshot, req []byte) string {
	var uk string
	_, _ = d.s.slow(snap, req, false, func(name string) ([]netip.Addr, error) {
		uk = name
		return nil, errDefer
	}, nil, netip.Addr{})
	return uk
}

// booting starts the unikernel for req, if any, and returns the channel
// that closes when its boot settles; nil if there is nothing to wait for.
func (d *delayer) booting(snap *snapshot, req []byte, src netip.Addr) (string, <-chan struct{}) {
	name := d.unikernelOf(snap, req)
	if name == "" {
		return "", nil
	}
	if _, err := d.s.summon(src, name); err != nil {
		return "", nil // answered (SERVFAIL) at once
	}
	ch := d.waiter.WaitReady(name)
	if ch == nil {
		return "", nil
	}
	select {
	case <-ch:
		return "", nil
	default:
	}
	return name, ch
}

// park takes req (from addr on conn), a query that needs a summon, to be
// answered once its unikernel is ready. It reports false if the query is to
// be answered now (no boot under way, delay off, or the lists full). It
// never blocks.
func (d *delayer) park(snap *snapshot, req []byte, addr net.Addr, conn *net.UDPConn) bool {
	if !d.on() {
		return false
	}
	name, ch := d.booting(snap, req, addrOf(addr))
	if ch == nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l, exists := d.lists[name]
	if d.total >= maxParked || len(l) >= maxParkedPerUnikernel {
		d.full.Inc()
		return false
	}
	if !exists {
		s := d.s
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return false
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go d.answerWhenReady(name, ch)
	}
	d.lists[name] = append(l, parkedQuery{req: slices.Clone(req), addr: addr, conn: conn})
	d.total++
	d.parked.Inc()
	return true
}

// answerWhenReady answers name's parked queries once its boot settles or
// the delay passes (dropping them if the server closes first).
func (d *delayer) answerWhenReady(name string, ch <-chan struct{}) {
	defer d.s.wg.Done()
	t := time.NewTimer(d.delay)
	defer t.Stop()
	closing := false
	select {
	case <-ch:
	case <-t.C:
	case <-d.s.ctx.Done():
		closing = true
	}
	d.mu.Lock()
	l := d.lists[name]
	delete(d.lists, name)
	d.total -= len(l)
	d.mu.Unlock()
	if closing {
		return
	}
	w := &worker{}
	for _, q := range l {
		w.addr = q.addr
		resp, _ := d.s.process(w, d.s.snap.Load(), q.req, false, true, nil)
		if resp = d.s.guard(w, q.req, resp, q.addr, false); resp != nil {
			_, _ = q.conn.WriteTo(resp, q.addr)
		}
	}
}

// wait blocks (a TCP connection's goroutine) until req's unikernel is
// ready, its boot fails or the delay passes.
func (d *delayer) wait(snap *snapshot, req []byte, src netip.Addr) {
	if !d.on() {
		return
	}
	_, ch := d.booting(snap, req, src)
	if ch == nil {
		return
	}
	t := time.NewTimer(d.delay)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-d.s.ctx.Done():
	}
}
