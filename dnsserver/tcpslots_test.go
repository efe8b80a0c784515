package dnsserver

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// pipeConn is a net.Conn with a chosen remote address that records Close.
type pipeConn struct {
	net.Conn
	remote net.Addr
	closed bool
}

func (p *pipeConn) RemoteAddr() net.Addr { return p.remote }
func (p *pipeConn) Close() error         { p.closed = true; return nil }

func newPipeConn(ip string) *pipeConn {
	return &pipeConn{remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
}

func TestTCPSlotsAdmit(t *testing.T) {
	type step struct {
		src      string
		busy     bool // mark the new connection busy
		wantOK   bool
		wantEvic int // index of the connection evicted, -1 none
	}
	for _, tc := range []struct {
		name           string
		max, perSource int
		steps          []step
	}{
		{"under the caps", 4, 4, []step{{"192.0.2.1", false, true, -1}, {"192.0.2.2", false, true, -1}}},
		{"full: the oldest idle goes", 2, 2, []step{
			{"192.0.2.1", false, true, -1}, {"192.0.2.1", false, true, -1}, {"192.0.2.9", false, true, 0}}},
		{"full: busy ones stay", 2, 2, []step{
			{"192.0.2.1", true, true, -1}, {"192.0.2.1", false, true, -1}, {"192.0.2.9", false, true, 1}}},
		{"full and all busy: refused", 2, 2, []step{
			{"192.0.2.1", true, true, -1}, {"192.0.2.1", true, true, -1}, {"192.0.2.9", false, false, -1}}},
		{"source at its cap evicts its own", 4, 2, []step{
			{"192.0.2.9", false, true, -1}, {"192.0.2.1", false, true, -1}, {"192.0.2.1", false, true, -1},
			{"192.0.2.1", false, true, 1}}},
		{"source at its cap, all busy: refused", 4, 1, []step{
			{"192.0.2.1", true, true, -1}, {"192.0.2.1", false, false, -1}}},
		{"IPv6 counted per /64", 4, 1, []step{
			{"2001:db8::1", false, true, -1}, {"2001:db8::2", false, true, 0}, {"2001:db8:0:1::1", false, true, -1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			ts := newTCPSlots(tc.max, tc.perSource, 10*time.Second)
			ts.now = func() time.Time { now = now.Add(time.Millisecond); return now }
			var conns []*pipeConn
			for i, st := range tc.steps {
				closedBefore := make([]bool, len(conns))
				for j, old := range conns {
					closedBefore[j] = old.closed
				}
				c := newPipeConn(st.src)
				slot := ts.admit(c)
				if (slot != nil) != st.wantOK {
					t.Fatalf("step %d: admitted %v, want %v", i, slot != nil, st.wantOK)
				}
				for j, old := range conns {
					if evicted := old.closed && !closedBefore[j]; evicted != (j == st.wantEvic) {
						t.Fatalf("step %d: connection %d evicted = %v", i, j, evicted)
					}
				}
				if slot != nil && st.busy {
					ts.setBusy(slot, true)
				}
				conns = append(conns, c)
			}
		})
	}
}

func TestTCPIdleTimeoutShrinks(t *testing.T) {
	ts := newTCPSlots(10, 10, 10*time.Second)
	var got []time.Duration
	for i := range 10 {
		got = append(got, ts.idleTimeout())
		ts.admit(newPipeConn(fmt.Sprintf("192.0.2.%d", i+1)))
	}
	got = append(got, ts.idleTimeout())
	want := []time.Duration{10e9, 10e9, 10e9, 10e9, 10e9, 10e9, 8e9, 6e9, 4e9, 2e9, tcpMinIdle}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("idle timeouts as the slots fill: %v, want %v", got, want)
	}
}

// tcpQuery sends one query on c and reads its answer.
func tcpQuery(c net.Conn, name string) error {
	m := new(dns.Msg).SetQuestion(name, dns.TypeA)
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)); err != nil {
		return err
	}
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	_, err = io.ReadFull(c, make([]byte, binary.BigEndian.Uint16(hdr[:])))
	return err
}

// TestTCPSlotHogDoesNotLockOut: one client takes every TCP slot and keeps
// each connection alive with a query every 8 s (and reconnects whatever is
// closed); another client still gets its answers. Small: 8 slots, all
// allowed to one address. Default: the server's own caps (1024 slots, 64
// per address), the hog on 16 addresses.
func TestTCPSlotHogDoesNotLockOut(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 12 s: a slow client's cycle of 8 s")
	}
	for _, tc := range []struct {
		name              string
		slots, perSource  int
		sources, attempts int
		every             time.Duration
	}{
		{"small", 8, 8, 1, 3, 4 * time.Second},
		{"default caps", tcpMaxConns, tcpMaxPerSource, tcpMaxConns / tcpMaxPerSource, 3, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := startTestServer(t, newFakeSummoner())
			s.hard.tcp.setLimits(tc.slots, tc.perSource, 10*time.Second)
			hogTCP(t, s, addr, tc.slots, tc.perSource, tc.sources, tc.attempts, tc.every)
		})
	}
}

// hogTCP fills every slot from sources addresses (127.0.0.2 on), then has
// another client (127.0.0.1) query attempts times, every apart.
func hogTCP(t *testing.T, s *Server, addr string, slots, perSource, sources, attempts int, every time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var mu sync.Mutex
	held, reconnects := 0, 0
	for i := range slots {
		hog := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i/perSource%sources))}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := hog.DialContext(ctx, "tcp", addr)
				if err != nil {
					select {
					case <-ctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
					continue
				}
				mu.Lock()
				held++
				mu.Unlock()
				stop := context.AfterFunc(ctx, func() { _ = c.Close() })
				for tcpQuery(c, "mail.example.test.") == nil {
					select {
					case <-ctx.Done():
					case <-time.After(8 * time.Second):
					}
				}
				stop()
				_ = c.Close()
				mu.Lock()
				reconnects++
				mu.Unlock()
			}
		}()
	}
	// Wait until the hog holds every slot.
	for deadline := time.Now().Add(10 * time.Second); s.hard.tcp.count() < slots; {
		if time.Now().After(deadline) {
			t.Fatalf("the hog holds %d slots of %d", s.hard.tcp.count(), slots)
		}
		time.Sleep(10 * time.Millisecond)
	}
	other := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, Timeout: 2 * time.Second}
	for i := range attempts {
		start := time.Now()
		c, err := other.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("attempt %d: dial: %v", i, err)
		}
		err = tcpQuery(c, "www.example.test.")
		_ = c.Close()
		if err != nil {
			t.Fatalf("attempt %d: the other client got no answer: %v", i, err)
		}
		t.Logf("attempt %d: answered in %v with the hog on %d slots", i, time.Since(start).Round(time.Microsecond), s.hard.tcp.count())
		time.Sleep(every)
	}
	mu.Lock()
	t.Logf("hog: %d connections opened, %d closed by the server", held, reconnects)
	mu.Unlock()
}
