package dnsserver

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// waitSummoner answers Summon at once and reports a boot under way for the
// unikernels in booting until ready is called.
type waitSummoner struct {
	*fakeSummoner
	mu      sync.Mutex
	booting map[string]chan struct{}
}

func newWaitSummoner(booting ...string) *waitSummoner {
	w := &waitSummoner{fakeSummoner: newFakeSummoner(), booting: map[string]chan struct{}{}}
	for _, b := range booting {
		w.booting[b] = make(chan struct{})
	}
	return w
}

func (w *waitSummoner) WaitReady(name string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.booting[name]
}

func (w *waitSummoner) ready(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.booting[name])
	delete(w.booting, name)
}

func startDelayServer(t *testing.T, sum Summoner, delay time.Duration) (*Server, string) {
	t.Helper()
	return startServer(t, testConfig(t), Options{Summoner: sum, ResponseDelay: delay})
}

// udpClient sends queries on one socket and collects the answers by ID.
type udpClient struct {
	c       net.Conn
	mu      sync.Mutex
	answers map[uint16]*dns.Msg
	got     chan uint16
}

func newUDPClient(t *testing.T, addr string) *udpClient {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	u := &udpClient{c: c, answers: map[uint16]*dns.Msg{}, got: make(chan uint16, 4096)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			m := new(dns.Msg)
			if m.Unpack(buf[:n]) != nil {
				continue
			}
			u.mu.Lock()
			u.answers[m.Id] = m
			u.mu.Unlock()
			u.got <- m.Id
		}
	}()
	t.Cleanup(func() { _ = c.Close(); <-done })
	return u
}

func (u *udpClient) send(t *testing.T, id uint16, name string) {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, dns.TypeA)
	m.Id = id
	b, _ := m.Pack()
	if _, err := u.c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// wait waits for the answers to ids (or fails after 5 s).
func (u *udpClient) wait(t *testing.T, ids map[uint16]bool) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		u.mu.Lock()
		missing := 0
		for id := range ids {
			if u.answers[id] == nil {
				missing++
			}
		}
		u.mu.Unlock()
		if missing == 0 {
			return
		}
		select {
		case <-u.got:
		case <-timeout:
			t.Fatalf("%d answers of %d missing", missing, len(ids))
		}
	}
}

func (u *udpClient) answered(id uint16) *dns.Msg {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.answers[id]
}

// waitCounter waits until c reaches want (or fails after 5 s).
func waitCounter(t *testing.T, c prometheus.Counter, want float64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); counterValue(t, c) < want; {
		if time.Now().After(deadline) {
			t.Fatalf("counter at %v, want %v", counterValue(t, c), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestResponseDelayParksUDP: queries for a booting unikernel wait until it
// is ready, while static names keep being answered by the same readers.
func TestResponseDelayParksUDP(t *testing.T) {
	sum := newWaitSummoner("www")
	s, addr := startDelayServer(t, sum, 10*time.Second)
	u := newUDPClient(t, addr)
	booting := map[uint16]bool{}
	// In chunks, so that no burst overflows the server's socket buffer.
	for i := range 200 {
		booting[uint16(i)] = true
		u.send(t, uint16(i), "www.example.test.")
		if i%20 == 19 {
			waitCounter(t, s.hard.delay.parked, float64(i+1))
		}
	}
	static := map[uint16]bool{}
	for i := 1000; i < 1200; i++ {
		static[uint16(i)] = true
		u.send(t, uint16(i), "mail.example.test.")
		if i%20 == 19 {
			u.wait(t, static)
		}
	}
	u.wait(t, static)
	for id := range booting {
		if m := u.answered(id); m != nil {
			t.Fatalf("query %d for the booting unikernel answered before it is ready: %v", id, m)
		}
	}
	sum.ready("www")
	u.wait(t, booting)
	for id := range booting {
		m := u.answered(id)
		if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "10.213.0.5" {
			t.Fatalf("answer %d after ready: %v", id, m)
		}
	}
}

// TestResponseDelayBounded: past the per-unikernel bound, queries are
// answered at once; after the delay, the parked ones are answered anyway.
func TestResponseDelayBounded(t *testing.T) {
	sum := newWaitSummoner("www")
	s, addr := startDelayServer(t, sum, 2*time.Second)
	u := newUDPClient(t, addr)
	const n = maxParkedPerUnikernel + 44
	early := map[uint16]bool{}
	all := map[uint16]bool{}
	for i := range n {
		all[uint16(i)] = true
		if i >= maxParkedPerUnikernel {
			early[uint16(i)] = true
		}
		u.send(t, uint16(i), "www.example.test.")
		if i%20 == 19 || i == maxParkedPerUnikernel-1 {
			// Paced, so that no burst overflows the server's socket buffer.
			waitCounter(t, s.hard.delay.parked, float64(min(i+1, maxParkedPerUnikernel)))
		}
	}
	u.wait(t, early)
	if got := counterValue(t, s.hard.delay.full); got != n-maxParkedPerUnikernel {
		t.Fatalf("list_full = %v, want %d", got, n-maxParkedPerUnikernel)
	}
	u.wait(t, all) // the delay passes (the boot never settles)
}

// TestResponseDelayTCP: over TCP the connection waits for the boot.
func TestResponseDelayTCP(t *testing.T) {
	sum := newWaitSummoner("www")
	_, addr := startDelayServer(t, sum, 10*time.Second)
	type result struct {
		m   *dns.Msg
		err error
	}
	done := make(chan result, 1)
	go func() {
		c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
		m, _, err := c.Exchange(new(dns.Msg).SetQuestion("www.example.test.", dns.TypeA), addr)
		done <- result{m, err}
	}()
	// A static name over TCP meanwhile.
	if m, err := query(t, "tcp", addr, "mail.example.test.", dns.TypeA); err != nil || len(m.Answer) != 1 {
		t.Fatalf("static name over TCP during the boot: %v %v", m, err)
	}
	select {
	case r := <-done:
		t.Fatalf("answered before ready: %v %v", r.m, r.err)
	default:
	}
	sum.ready("www")
	r := <-done
	if r.err != nil || len(r.m.Answer) != 1 {
		t.Fatalf("after ready: %v %v", r.m, r.err)
	}
}

// TestResponseDelayWithoutWaiter: a Summoner without WaitReady answers at
// once (the old behaviour, no parking).
func TestResponseDelayWithoutWaiter(t *testing.T) {
	_, addr := startDelayServer(t, newFakeSummoner(), 10*time.Second)
	m, err := query(t, "udp", addr, "www.example.test.", dns.TypeA)
	if err != nil || len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "10.213.0.5" {
		t.Fatalf("%v %v", m, err)
	}
}

// sourceSummoner records the sources SummonFrom is called with.
type sourceSummoner struct {
	*fakeSummoner
	mu   sync.Mutex
	srcs map[string]bool
}

func (s *sourceSummoner) SummonFrom(ctx context.Context, src netip.Addr, name string) ([]netip.Addr, error) {
	s.mu.Lock()
	s.srcs[src.String()] = true
	s.mu.Unlock()
	return s.Summon(ctx, name)
}

// TestSummonFromSource: a SourceSummoner learns each query's source, over
// UDP and TCP.
func TestSummonFromSource(t *testing.T) {
	sum := &sourceSummoner{fakeSummoner: newFakeSummoner(), srcs: map[string]bool{}}
	_, addr := startDelayServer(t, sum, 0)
	for _, netw := range []string{"udp", "tcp"} {
		local := "127.0.0.7"
		if netw == "tcp" {
			local = "127.0.0.8"
		}
		c := &dns.Client{Net: netw, Timeout: 5 * time.Second}
		if netw == "udp" {
			c.Dialer = &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(local)}}
		} else {
			c.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		}
		m, _, err := c.Exchange(new(dns.Msg).SetQuestion("www.example.test.", dns.TypeA), addr)
		if err != nil || len(m.Answer) != 1 {
			t.Fatalf("%s: %v %v", netw, m, err)
		}
		sum.mu.Lock()
		seen := sum.srcs[local]
		sum.mu.Unlock()
		if !seen {
			t.Fatalf("%s: SummonFrom never saw source %s (saw %v)", netw, local, sum.srcs)
		}
	}
}
