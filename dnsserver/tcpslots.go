package dnsserver

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TCP slot management (RFC 7766 §6.2.3): connections are capped in all and
// per source address (IPv6 per /64). When the cap is reached, the oldest
// idle connection (of the same source when that source is at its own cap)
// is closed to make room, rather than refusing the newcomer; the idle
// timeout shrinks as the slots fill. A connection is idle whenever the
// server is not working on one of its queries, including while it waits
// for the rest of a query: a client that trickles bytes holds no slot
// against others.

// Tunables.
const (
	tcpMaxPerSource = 64
	tcpMinIdle      = 500 * time.Millisecond // idle timeout with every slot taken
)

// tcpConn is one connection's slot.
type tcpConn struct {
	c      net.Conn
	src    netip.Addr // source address, IPv6 masked to /64
	busy   bool       // a query is being answered
	active time.Time  // last accepted or answered
}

// tcpSlots is the table of TCP connections.
type tcpSlots struct {
	now     func() time.Time
	evicted prometheus.Counter // may be nil

	mu             sync.Mutex
	max, perSource int
	idle           time.Duration
	conns          map[net.Conn]*tcpConn
	bySrc          map[netip.Addr]int
}

func newTCPSlots(max, perSource int, idle time.Duration) *tcpSlots {
	return &tcpSlots{
		max: max, perSource: perSource, idle: idle, now: time.Now,
		conns: map[net.Conn]*tcpConn{}, bySrc: map[netip.Addr]int{},
	}
}

// setLimits changes the caps and the idle timeout (tests).
func (t *tcpSlots) setLimits(max, perSource int, idle time.Duration) {
	t.mu.Lock()
	t.max, t.perSource, t.idle = max, perSource, idle
	t.mu.Unlock()
}

// sourceKey is the address connections are counted under.
func sourceKey(a net.Addr) netip.Addr {
	addr := addrOf(a)
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.Addr()
	}
	return addr
}

// admit takes a slot for c, closing the oldest idle connection if the
// caps are reached. It returns nil (and c is to be refused) if no
// connection could be closed.
func (t *tcpSlots) admit(c net.Conn) *tcpConn {
	src := sourceKey(c.RemoteAddr())
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bySrc[src] >= t.perSource {
		if !t.evictLocked(src, true) {
			return nil
		}
	}
	if len(t.conns) >= t.max {
		if !t.evictLocked(src, false) {
			return nil
		}
	}
	tc := &tcpConn{c: c, src: src, active: t.now()}
	t.conns[c] = tc
	t.bySrc[src]++
	return tc
}

// evictLocked closes the oldest idle connection (of src if sameSource) and
// frees its slot at once; false if there is none.
func (t *tcpSlots) evictLocked(src netip.Addr, sameSource bool) bool {
	var victim *tcpConn
	for _, tc := range t.conns {
		if tc.busy || sameSource && tc.src != src {
			continue
		}
		if victim == nil || tc.active.Before(victim.active) {
			victim = tc
		}
	}
	if victim == nil {
		return false
	}
	_ = victim.c.Close()
	t.removeLocked(victim)
	if t.evicted != nil {
		t.evicted.Inc()
	}
	return true
}

func (t *tcpSlots) removeLocked(tc *tcpConn) {
	if t.conns[tc.c] != tc {
		return // evicted already
	}
	delete(t.conns, tc.c)
	if t.bySrc[tc.src]--; t.bySrc[tc.src] <= 0 {
		delete(t.bySrc, tc.src)
	}
}

// release frees tc's slot (if it was not evicted).
func (t *tcpSlots) release(tc *tcpConn) {
	t.mu.Lock()
	t.removeLocked(tc)
	t.mu.Unlock()
}

// setBusy marks tc as answering a query (not evictable) or idle again.
func (t *tcpSlots) setBusy(tc *tcpConn, busy bool) {
	t.mu.Lock()
	tc.busy = busy
	tc.active = t.now()
	t.mu.Unlock()
}

// idleTimeout is how long a connection may wait for its next query: the
// full timeout while at most half the slots are taken, shrinking linearly
// to tcpMinIdle when all are.
func (t *tcpSlots) idleTimeout() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	used := len(t.conns)
	half := t.max / 2
	if used <= half || half == 0 {
		return t.idle
	}
	free := max(t.max-used, 0)
	return max(tcpMinIdle, t.idle*time.Duration(free)/time.Duration(t.max-half))
}

// count returns the connections held.
func (t *tcpSlots) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}
