package roottest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/jitsu-unikernel/jitsu/internal/nettest"
	"github.com/jitsu-unikernel/jitsu/synproxy"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

type result struct {
	gap time.Duration // connect completed minus server listening
	err error
}

// trial is one cold connection: the client dials addr while the guest
// stand-in's port is closed (its stack up: a SYN reaching it is answered
// with a RST), after delay the server listens and the proxy (if any) is
// released, as the summoner does once its readiness probe succeeds.
// With linkDown the guest's bridge port is disabled until then, as for a VM
// that has not booted yet.
func (tp *topo) trial(t testing.TB, p *runningProxy, from *nettest.NS, addr netip.Addr, delay time.Duration, linkDown bool) result {
	t.Helper()
	if p != nil {
		if err := p.Hold([]netip.Addr{addr}, tp.mac, tcpOnly); err != nil {
			t.Fatalf("hold: %v", err)
		}
	}
	if linkDown {
		tp.host.Run("bridge", "link", "set", "dev", "vg0", "state", "0")
	}
	type dialed struct {
		conn net.Conn
		at   time.Time
		err  error
	}
	dc := make(chan dialed, 1)
	go func() {
		c, at, err := dial(from, addr, 10*time.Second)
		dc <- dialed{c, at, err}
	}()
	time.Sleep(delay)
	if linkDown {
		tp.host.Run("bridge", "link", "set", "dev", "vg0", "state", "3")
	}
	accepted := make(chan struct{}, 1)
	ln, listenAt := listen(t, tp.guest, accepted)
	defer ln.Close()
	if p != nil {
		if _, err := p.Release([]netip.Addr{addr}); err != nil {
			t.Errorf("release: %v", err)
		}
	}
	d := <-dc
	if d.err != nil {
		return result{err: d.err}
	}
	defer d.conn.Close()
	select {
	case <-accepted: // closing the listener now cannot reset this connection
	case <-time.After(10 * time.Second):
		t.Fatalf("server never accepted the connection to %v", addr)
	}
	return result{gap: d.at.Sub(listenAt)}
}

// TestHeldConnectionsComplete: with the proxy, every connection to a guest
// whose server starts listening after a random delay succeeds, the guest
// never sends a RST, and the connect completes right after the listen.
func TestHeldConnectionsComplete(t *testing.T) {
	tp := newTopo(t)
	p := tp.startProxy(t, synproxy.Limits{}, nil)
	for i, tc := range tp.paths() {
		count := 30
		if i == 0 { // routed ipv4, the common case, gets the most
			count = 100
		}
		t.Run(tc.name, func(t *testing.T) {
			rstBefore := outRsts(t, tp.guest)
			var gaps []time.Duration
			for i := range count {
				delay := time.Duration(rand.IntN(20_000)) * time.Microsecond
				r := tp.trial(t, p, tc.from, tc.addr, delay, false)
				if r.err != nil {
					t.Fatalf("connection %d (delay %v): %v", i, delay, r.err)
				}
				gaps = append(gaps, r.gap)
				if st := tp.neighState(t, tc.addr); strings.Contains(st, "PERMANENT") {
					t.Fatalf("neighbour entry still pinned after release: %q", st)
				}
			}
			if n := outRsts(t, tp.guest) - rstBefore; n != 0 {
				t.Errorf("the guest sent %d RSTs: it saw a SYN before it listened", n)
			}
			med, p99, mx := stats(gaps)
			t.Logf("%d connections, listen -> connect: median %v, p99 %v, max %v", len(gaps), med, p99, mx)
		})
	}
}

// TestWithoutProxy measures the same runs with no proxy: a guest whose
// stack is up but whose port is still closed refuses the connection, and a
// guest that is not reachable yet costs the client a retransmission wait.
func TestWithoutProxy(t *testing.T) {
	tp := newTopo(t)
	t.Run("port closed", func(t *testing.T) {
		rstBefore := outRsts(t, tp.guest)
		refused := 0
		for range 10 {
			r := tp.trial(t, nil, tp.client, guest4, 5*time.Millisecond+time.Duration(rand.IntN(10_000))*time.Microsecond, false)
			if !isRefused(r.err) {
				t.Errorf("connect = %v, want ECONNREFUSED from the guest's closed port", r.err)
			} else {
				refused++
			}
		}
		t.Logf("without proxy, port closed: %d/10 connections refused, guest sent %d RSTs", refused, outRsts(t, tp.guest)-rstBefore)
	})
	t.Run("guest not reachable yet", func(t *testing.T) {
		var gaps []time.Duration
		for range 3 {
			r := tp.trial(t, nil, tp.client, guest4, 20*time.Millisecond, true)
			if r.err != nil {
				t.Logf("connect failed: %v", r.err)
				continue
			}
			gaps = append(gaps, r.gap)
		}
		med, _, mx := stats(gaps)
		t.Logf("without proxy, guest unreachable until listen: %d/3 connected, listen -> connect median %v, max %v (ARP retry / SYN retransmission)", len(gaps), med, mx)
	})
}

// TestHeldWhileUnreachable: the same unreachable guest with the proxy: the
// held SYN and the pinned neighbour entry make the connect immediate.
func TestHeldWhileUnreachable(t *testing.T) {
	tp := newTopo(t)
	p := tp.startProxy(t, synproxy.Limits{}, nil)
	var gaps []time.Duration
	for i := range 10 {
		r := tp.trial(t, p, tp.client, guest4, 20*time.Millisecond, true)
		if r.err != nil {
			t.Fatalf("connection %d: %v", i, r.err)
		}
		gaps = append(gaps, r.gap)
	}
	med, p99, mx := stats(gaps)
	t.Logf("with proxy, guest unreachable until listen: listen -> connect median %v, p99 %v, max %v", med, p99, mx)
}

// TestDropResets: when the boot fails, every held client gets a RST at once.
func TestDropResets(t *testing.T) {
	tp := newTopo(t)
	p := tp.startProxy(t, synproxy.Limits{}, nil)
	for _, tc := range tp.paths() {
		t.Run(tc.name, func(t *testing.T) {
			if err := p.Hold([]netip.Addr{tc.addr}, tp.mac, tcpOnly); err != nil {
				t.Fatalf("hold: %v", err)
			}
			errc := make(chan error, 1)
			var doneAt time.Time
			go func() {
				c, at, err := dial(tc.from, tc.addr, 10*time.Second)
				if c != nil {
					c.Close()
				}
				doneAt = at
				errc <- err
			}()
			waitHeld(t, p, 1)
			dropAt := time.Now()
			if err := p.Drop([]netip.Addr{tc.addr}); err != nil {
				t.Fatalf("drop: %v", err)
			}
			err := <-errc
			if !isRefused(err) {
				t.Fatalf("connect after drop = %v, want ECONNREFUSED", err)
			}
			if st := tp.neighState(t, tc.addr); strings.Contains(st, "PERMANENT") {
				t.Errorf("neighbour entry still pinned after drop: %q", st)
			}
			t.Logf("drop -> client refused in %v", doneAt.Sub(dropAt))
		})
	}
}

// waitHeld waits until the proxy holds n SYNs (a test deadline, not a
// timing assertion).
func waitHeld(t testing.TB, p *runningProxy, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, _ := p.Held(); got == n {
			return
		}
		if time.Now().After(deadline) {
			got, _ := p.Held()
			t.Fatalf("held %d SYNs, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// flood sends count raw SYNs with random source ports from the client
// namespace to addr:port.
func flood(t testing.TB, tp *topo, addr netip.Addr, count int) {
	t.Helper()
	err := tp.client.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrInet4{Addr: addr.As4()}
		buf := gopacket.NewSerializeBuffer()
		for i := range count {
			ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: client4.AsSlice(), DstIP: addr.AsSlice()}
			tcp := &layers.TCP{SrcPort: layers.TCPPort(1024 + rand.IntN(64000)), DstPort: port, Seq: rand.Uint32(), SYN: true, Window: 1024}
			_ = tcp.SetNetworkLayerForChecksum(ip)
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp); err != nil {
				return err
			}
			if err := unix.Sendto(fd, buf.Bytes(), 0, sa); err != nil && err != unix.ENOBUFS {
				return fmt.Errorf("send syn %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("flood: %v", err)
	}
}

// queueStats reads the proxy's kernel queue line in the host namespace:
// packets in the queue now, dropped by the kernel (queue full) and by
// failed delivery to user space.
func queueStats(t testing.TB, tp *topo) (total, queueDropped, userDropped int) {
	t.Helper()
	out, err := tp.host.Exec("cat", "/proc/net/netfilter/nfnetlink_queue")
	if err != nil {
		t.Fatalf("read nfnetlink_queue: %v: %s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 7 && f[0] == strconv.Itoa(synproxy.DefaultQueue) {
			total, _ = strconv.Atoi(f[2])
			queueDropped, _ = strconv.Atoi(f[5])
			userDropped, _ = strconv.Atoi(f[6])
			return
		}
	}
	return 0, 0, 0
}

// TestSynFloodBounded: a flood of SYNs with random source ports at a held
// address keeps the hold, and the kernel queue, within the bounds.
func TestSynFloodBounded(t *testing.T) {
	tp := newTopo(t)
	limits := synproxy.Limits{PerAddress: 500, Total: 1000, Bytes: 24 << 10}
	reg := prometheus.NewRegistry()
	p := tp.startProxy(t, limits, reg)
	if err := p.Hold([]netip.Addr{guest4}, tp.mac, tcpOnly); err != nil {
		t.Fatalf("hold: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	maxHeld, maxBytes := 0, int64(0)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ctx.Err() == nil {
			n, b := p.Held()
			maxHeld, maxBytes = max(maxHeld, n), max(maxBytes, b)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	const count = 50_000
	start := time.Now()
	flood(t, tp, guest4, count)
	sent := time.Since(start)
	// Wait until the proxy has read everything the kernel queued: then
	// the kernel queue holds exactly the held SYNs.
	deadline := time.Now().Add(20 * time.Second)
	var qTotal, qDropped, uDropped int
	for {
		qTotal, qDropped, uDropped = queueStats(t, tp)
		if n, _ := p.Held(); n == qTotal || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-watched
	n, b := p.Held()
	t.Logf("flood of %d SYNs in %v: held %d SYNs / %d bytes (max seen %d / %d); kernel queue %d, kernel dropped %d (queue full) + %d (delivery)",
		count, sent, n, b, maxHeld, maxBytes, qTotal, qDropped, uDropped)
	perAddr := min(limits.PerAddress, limits.Total)
	if maxHeld > perAddr || maxBytes > limits.Bytes {
		t.Errorf("hold grew to %d SYNs / %d bytes, bound %d SYNs / %d bytes", maxHeld, maxBytes, perAddr, limits.Bytes)
	}
	if qTotal != n {
		t.Errorf("kernel queue holds %d packets, proxy holds %d", qTotal, n)
	}
	if n == 0 {
		t.Errorf("nothing held during the flood")
	}
	overflow := gatherCounter(t, reg, "jitsu_synproxy_syns_dropped_total", "overflow")
	if overflow == 0 {
		t.Errorf("no overflow counted for %d SYNs over a bound of %d", count, perAddr)
	}
	t.Logf("dropped{overflow} = %v", overflow)
}

func gatherCounter(t testing.TB, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{reason=%q}", name, reason)
	return 0
}

// TestCleanup: after Run returns nothing of the proxy is left in the host
// namespace, even with addresses still held; and Cleanup removes what a
// crashed run left behind.
func TestCleanup(t *testing.T) {
	tp := newTopo(t)
	p := tp.startProxy(t, synproxy.Limits{}, nil)
	if err := p.Hold([]netip.Addr{guest4, guest6}, tp.mac, tcpOnly); err != nil {
		t.Fatalf("hold: %v", err)
	}
	if err := p.Hold([]netip.Addr{guest4}, tp.mac, tcpOnly); err != nil {
		t.Fatalf("holding a held address again: %v", err)
	}
	if st := tp.neighState(t, guest4); !strings.Contains(st, "PERMANENT") || !strings.Contains(st, guestMAC) {
		t.Fatalf("held address not pinned: %q", st)
	}
	p.stop()
	if out := nettest.Run(t, "ip", "netns", "exec", tp.host.Name, "nft", "list", "tables"); strings.Contains(out, synproxy.TableName) {
		t.Errorf("table left after Run: %s", out)
	}
	for _, a := range []netip.Addr{guest4, guest6} {
		if st := tp.neighState(t, a); st != "" {
			t.Errorf("neighbour entry of %v left after Run: %q", a, st)
		}
	}

	// What a crashed run leaves: the table with held addresses in its
	// sets, and their pinned neighbour entries.
	tp.host.IP("neigh", "replace", guest4.String(), "lladdr", guestMAC, "dev", bridge, "nud", "permanent")
	tp.host.IP("neigh", "replace", guest6.String(), "lladdr", guestMAC, "dev", bridge, "nud", "permanent")
	script := fmt.Sprintf(`table inet %s {
	set held4 { type ipv4_addr; elements = { %s } }
	set held6 { type ipv6_addr; elements = { %s } }
	chain output { type filter hook output priority mangle; policy accept; }
}`, synproxy.TableName, guest4, guest6)
	if out, err := tp.host.Exec("nft", "-f", writeTemp(t, script)); err != nil {
		t.Fatalf("create leftover table: %v: %s", err, out)
	}
	// Another jitsu instance's table and pin, which Cleanup must not touch.
	other := netip.MustParseAddr("10.77.0.9")
	tp.host.IP("neigh", "replace", other.String(), "lladdr", guestMAC, "dev", bridge, "nud", "permanent")
	otherScript := fmt.Sprintf(`table inet jitsu_other {
	set held4 { type ipv4_addr; elements = { %s } }
}`, other)
	if out, err := tp.host.Exec("nft", "-f", writeTemp(t, otherScript)); err != nil {
		t.Fatalf("create another instance's table: %v: %s", err, out)
	}
	if err := tp.host.Do(func() error { return synproxy.Cleanup(bridge, synproxy.TableName) }); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	if out := nettest.Run(t, "ip", "netns", "exec", tp.host.Name, "nft", "list", "tables"); !strings.Contains(out, "jitsu_other") {
		t.Errorf("Cleanup removed another instance's table: %s", out)
	}
	if st := tp.neighState(t, other); !strings.Contains(st, "PERMANENT") {
		t.Errorf("Cleanup unpinned another instance's address: %q", st)
	}
	if out := nettest.Run(t, "ip", "netns", "exec", tp.host.Name, "nft", "list", "tables"); strings.Contains(out, synproxy.TableName) {
		t.Errorf("table left after Cleanup: %s", out)
	}
	for _, a := range []netip.Addr{guest4, guest6} {
		if st := tp.neighState(t, a); st != "" {
			t.Errorf("neighbour entry of %v left after Cleanup: %q", a, st)
		}
	}
	if err := tp.host.Do(func() error { return synproxy.Cleanup(bridge, synproxy.TableName) }); err != nil {
		t.Errorf("cleanup with nothing to clean: %v", err)
	}
}

func writeTemp(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "leftover.nft")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return path
}
