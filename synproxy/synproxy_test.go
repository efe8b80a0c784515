package synproxy

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	guest   = netip.MustParseAddr("10.77.0.2")
	guest2  = netip.MustParseAddr("10.77.0.3")
	guest6  = netip.MustParseAddr("fd77::2")
	client  = netip.MustParseAddr("10.78.0.2")
	client6 = netip.MustParseAddr("fd78::2")
	mac     = net.HardwareAddr{2, 0, 0x4a, 0x53, 0, 2}
)

// value reads a counter or gauge.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatalf("read metric: %v", err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func dropped(t *testing.T, p *Proxy, reason string) float64 {
	t.Helper()
	return value(t, p.m.dropped.WithLabelValues(reason))
}

// newTestProxy returns a proxy on a fake IO that behaves as if Run had
// opened it; tests feed packets with p.handle.
func newTestProxy(t *testing.T, l Limits) (*Proxy, *fakeIO) {
	t.Helper()
	f := newFakeIO()
	p, err := New(Options{IO: f, Limits: testLimits(l), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	p.running = true
	return p, f
}

func TestNewNeedsBridge(t *testing.T) {
	if _, err := New(Options{}); err == nil || !strings.Contains(err.Error(), "bridge") {
		t.Fatalf("New without bridge: err = %v, want an error naming the bridge", err)
	}
}

func TestNewRegistersMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Options{IO: newFakeIO(), Limits: testLimits(Limits{}), Registerer: reg}); err != nil {
		t.Fatalf("new: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{
		"jitsu_synproxy_syns_held_total", "jitsu_synproxy_syns_replayed_total",
		"jitsu_synproxy_syns_dropped_total", "jitsu_synproxy_resets_total",
		"jitsu_synproxy_held", "jitsu_synproxy_held_bytes",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("metric %s not registered (have %v)", want, names)
		}
	}
	if _, err := New(Options{IO: newFakeIO(), Limits: testLimits(Limits{}), Registerer: reg}); err == nil {
		t.Error("registering twice on one registry: no error")
	}
}

func TestReleaseUnholdsThenAcceptsInOrder(t *testing.T) {
	p, f := newTestProxy(t, Limits{})
	if err := p.Hold([]netip.Addr{guest, guest2}, mac, tcpOnly); err != nil {
		t.Fatalf("hold: %v", err)
	}
	p.handle(Packet{ID: 1, Data: synPacket(t, client, guest, 40001, 80, 100, 0)})
	p.handle(Packet{ID: 2, Data: synPacket(t, client, guest2, 40002, 80, 200, 0)})
	p.handle(Packet{ID: 3, Data: synPacket(t, client, guest, 40003, 80, 300, 0)})
	if n, _ := p.Held(); n != 3 {
		t.Fatalf("held = %d, want 3", n)
	}
	if _, err := p.Release([]netip.Addr{guest}); err != nil {
		t.Fatalf("release: %v", err)
	}
	want := []string{
		"hold 10.77.0.2 02:00:4a:53:00:02", "hold 10.77.0.3 02:00:4a:53:00:02",
		"unhold 10.77.0.2 ready=true", "accept 1", "accept 3",
	}
	if got := f.Events(); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
	if n, b := p.Held(); n != 1 || b != int64(len(synPacket(t, client, guest2, 40002, 80, 200, 0))) {
		t.Errorf("held after release = %d SYNs %d bytes, want the one SYN to %v", n, b, guest2)
	}
	if got := value(t, p.m.replayed); got != 2 {
		t.Errorf("replayed = %v, want 2", got)
	}
	// A SYN queued before the release but read after it is passed on.
	p.handle(Packet{ID: 4, Data: synPacket(t, client, guest, 40004, 80, 400, 0)})
	if got := f.Events(); got[len(got)-1] != "accept 4" {
		t.Errorf("late SYN to a released address: last event %q, want accept 4", got[len(got)-1])
	}
}

func TestDropResetsEveryHeldClient(t *testing.T) {
	for _, tc := range []struct {
		name        string
		src, dst    netip.Addr
		payload     int
		wantAckPlus uint32
	}{
		{"ipv4", client, guest, 0, 1},
		{"ipv6", client6, guest6, 0, 1},
		{"ipv4 fast open data", client, guest, 10, 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, f := newTestProxy(t, Limits{})
			if err := p.Hold([]netip.Addr{tc.dst}, mac, tcpOnly); err != nil {
				t.Fatalf("hold: %v", err)
			}
			p.handle(Packet{ID: 7, Data: synPacket(t, tc.src, tc.dst, 40001, 80, 1000, tc.payload)})
			if err := p.Drop([]netip.Addr{tc.dst}); err != nil {
				t.Fatalf("drop: %v", err)
			}
			ev := f.Events()
			if len(ev) != 4 || ev[1] != "unhold "+tc.dst.String()+" ready=false" || !strings.HasPrefix(ev[2], "write ") || ev[3] != "drop 7" {
				t.Fatalf("events = %q, want hold, unhold, write, drop 7", ev)
			}
			pkt := gopacket.NewPacket(f.written[0], map[bool]gopacket.LayerType{true: layers.LayerTypeIPv4, false: layers.LayerTypeIPv6}[tc.dst.Is4()], gopacket.Default)
			if el := pkt.ErrorLayer(); el != nil {
				t.Fatalf("reset does not decode: %v", el.Error())
			}
			tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp == nil || !tcp.RST || !tcp.ACK || tcp.SYN || tcp.SrcPort != 80 || tcp.DstPort != 40001 || tcp.Ack != 1000+tc.wantAckPlus {
				t.Fatalf("reset = %+v, want RST+ACK 80->40001 ack %d", tcp, 1000+tc.wantAckPlus)
			}
			src, dst := pkt.NetworkLayer().NetworkFlow().Endpoints()
			if src.String() != tc.dst.String() || dst.String() != tc.src.String() {
				t.Errorf("reset %v -> %v, want %v -> %v", src, dst, tc.dst, tc.src)
			}
			if got := value(t, p.m.resets); got != 1 {
				t.Errorf("resets = %v, want 1", got)
			}
			if got := dropped(t, p, ReasonFailed); got != 1 {
				t.Errorf("dropped{failed} = %v, want 1", got)
			}
			if n, b := p.Held(); n != 0 || b != 0 {
				t.Errorf("held after drop = %d, %d", n, b)
			}
		})
	}
}

func TestDuplicateKeepsLatest(t *testing.T) {
	p, f := newTestProxy(t, Limits{})
	if err := p.Hold([]netip.Addr{guest}, mac, tcpOnly); err != nil {
		t.Fatalf("hold: %v", err)
	}
	p.handle(Packet{ID: 1, Data: synPacket(t, client, guest, 40001, 80, 100, 0)})
	p.handle(Packet{ID: 2, Data: synPacket(t, client, guest, 40001, 80, 100, 0)}) // retransmission
	p.handle(Packet{ID: 3, Data: synPacket(t, client, guest, 40002, 80, 100, 0)}) // another connection
	if n, _ := p.Held(); n != 2 {
		t.Fatalf("held = %d, want 2", n)
	}
	if got := dropped(t, p, ReasonDuplicate); got != 1 {
		t.Errorf("dropped{duplicate} = %v, want 1", got)
	}
	if _, err := p.Release([]netip.Addr{guest}); err != nil {
		t.Fatalf("release: %v", err)
	}
	want := []string{"hold 10.77.0.2 02:00:4a:53:00:02", "drop 1", "unhold 10.77.0.2 ready=true", "accept 2", "accept 3"}
	if got := f.Events(); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
}

func TestBounds(t *testing.T) {
	synLen := int64(len(synPacket(t, client, guest, 1, 80, 1, 0)))
	for _, tc := range []struct {
		name      string
		limits    Limits
		addrs     []netip.Addr // SYNs are sent to these in turn
		send      int
		wantHeld  int
		wantBytes int64
	}{
		{"per address", Limits{PerAddress: 5}, []netip.Addr{guest}, 20, 5, 5 * synLen},
		{"per address, two addresses", Limits{PerAddress: 5}, []netip.Addr{guest, guest2}, 20, 10, 10 * synLen},
		{"total", Limits{Total: 7}, []netip.Addr{guest, guest2}, 20, 7, 7 * synLen},
		{"bytes", Limits{Bytes: 3*synLen + synLen/2}, []netip.Addr{guest, guest2}, 20, 3, 3 * synLen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, f := newTestProxy(t, tc.limits)
			if err := p.Hold(tc.addrs, mac, tcpOnly); err != nil {
				t.Fatalf("hold: %v", err)
			}
			for i := range tc.send {
				dst := tc.addrs[i%len(tc.addrs)]
				p.handle(Packet{ID: uint32(i + 1), Data: synPacket(t, client, dst, uint16(10000+i), 80, 1, 0)})
			}
			n, b := p.Held()
			if n != tc.wantHeld || b != tc.wantBytes {
				t.Errorf("held = %d SYNs %d bytes, want %d, %d", n, b, tc.wantHeld, tc.wantBytes)
			}
			if got, want := dropped(t, p, ReasonOverflow), float64(tc.send-tc.wantHeld); got != want {
				t.Errorf("dropped{overflow} = %v, want %v", got, want)
			}
			if got := value(t, p.m.heldNow); got != float64(tc.wantHeld) {
				t.Errorf("held gauge = %v, want %d", got, tc.wantHeld)
			}
			if got := value(t, p.m.heldBytes); got != float64(tc.wantBytes) {
				t.Errorf("held_bytes gauge = %v, want %d", got, tc.wantBytes)
			}
			// The first SYNs stay, the later ones were dropped at once.
			drops := 0
			for _, e := range f.Events() {
				if strings.HasPrefix(e, "drop ") {
					drops++
				}
			}
			if drops != tc.send-tc.wantHeld {
				t.Errorf("%d drop verdicts, want %d", drops, tc.send-tc.wantHeld)
			}
		})
	}
}

func TestAge(t *testing.T) {
	p, f := newTestProxy(t, Limits{MaxAge: 10 * time.Second})
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	if err := p.Hold([]netip.Addr{guest}, mac, tcpOnly); err != nil {
		t.Fatalf("hold: %v", err)
	}
	p.handle(Packet{ID: 1, Data: synPacket(t, client, guest, 40001, 80, 1, 0)})
	now = now.Add(6 * time.Second)
	p.handle(Packet{ID: 2, Data: synPacket(t, client, guest, 40002, 80, 1, 0)})
	now = now.Add(5 * time.Second) // first is 11 s old, second 5 s
	p.expire()
	if n, _ := p.Held(); n != 1 {
		t.Fatalf("held = %d, want 1", n)
	}
	if got := dropped(t, p, ReasonAge); got != 1 {
		t.Errorf("dropped{age} = %v, want 1", got)
	}
	if ev := f.Events(); ev[len(ev)-1] != "drop 1" {
		t.Errorf("last event %q, want drop 1", ev[len(ev)-1])
	}
}

func TestMalformedDroppedAndCounted(t *testing.T) {
	syn := synPacket(t, client, guest, 40001, 80, 1, 0)
	frag := append([]byte(nil), syn...)
	frag[6] |= 0x20 // more fragments
	badVersion := append([]byte(nil), syn...)
	badVersion[0] = 0x55
	cases := map[string][]byte{
		"empty":         {},
		"garbage":       []byte("not a packet at all, really"),
		"truncated ip":  syn[:10],
		"truncated tcp": syn[:30],
		"fragment":      frag,
		"ip version 5":  badVersion,
		"syn-ack":       buildTCP(t, client, guest, &layers.TCP{SrcPort: 40001, DstPort: 80, SYN: true, ACK: true}, nil),
		"rst":           buildTCP(t, client, guest, &layers.TCP{SrcPort: 40001, DstPort: 80, RST: true}, nil),
		"syn-fin":       buildTCP(t, client, guest, &layers.TCP{SrcPort: 40001, DstPort: 80, SYN: true, FIN: true}, nil),
		"port 0":        buildTCP(t, client, guest, &layers.TCP{SrcPort: 0, DstPort: 80, SYN: true}, nil),
		"udp": func() []byte {
			b := append([]byte(nil), syn...)
			b[9] = 17
			return b
		}(),
	}
	p, f := newTestProxy(t, Limits{})
	if err := p.Hold([]netip.Addr{guest}, mac, tcpOnly); err != nil {
		t.Fatalf("hold: %v", err)
	}
	id := uint32(0)
	for name, data := range cases {
		id++
		before := dropped(t, p, ReasonMalformed)
		p.handle(Packet{ID: id, Data: data})
		if got := dropped(t, p, ReasonMalformed); got != before+1 {
			t.Errorf("%s: dropped{malformed} %v -> %v, want +1", name, before, got)
		}
		if ev := f.Events(); ev[len(ev)-1] != "drop "+strconv.FormatUint(uint64(id), 10) {
			t.Errorf("%s: last event %q, want a drop verdict", name, ev[len(ev)-1])
		}
	}
	if n, _ := p.Held(); n != 0 {
		t.Errorf("held = %d after malformed packets only", n)
	}
}

func TestNotHeldAccepted(t *testing.T) {
	p, f := newTestProxy(t, Limits{})
	p.handle(Packet{ID: 9, Data: synPacket(t, client, guest, 40001, 80, 1, 0)})
	if got := f.Events(); !slices.Equal(got, []string{"accept 9"}) {
		t.Errorf("events = %q, want accept 9", got)
	}
}

func TestHoldValidates(t *testing.T) {
	p, _ := newTestProxy(t, Limits{})
	if err := p.Hold([]netip.Addr{guest}, nil, tcpOnly); err == nil {
		t.Error("hold with no MAC: no error")
	}
	if err := p.Hold([]netip.Addr{{}}, mac, tcpOnly); err == nil {
		t.Error("hold of the zero address: no error")
	}
}

func TestOnSYN(t *testing.T) {
	var seen []netip.Addr
	f := newFakeIO()
	p, err := New(Options{IO: f, Limits: testLimits(Limits{}), OnPacket: func(a netip.Addr, _ uint8) { seen = append(seen, a) }})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	p.running = true
	if err := p.Hold([]netip.Addr{guest6}, mac, tcpOnly); err != nil {
		t.Fatalf("hold: %v", err)
	}
	p.handle(Packet{ID: 1, Data: synPacket(t, client6, guest6, 40001, 80, 1, 0)})
	p.handle(Packet{ID: 2, Data: synPacket(t, client, guest, 40001, 80, 1, 0)}) // not held
	if !slices.Equal(seen, []netip.Addr{guest6}) {
		t.Errorf("OnSYN saw %v, want [%v]", seen, guest6)
	}
}

// TestRunLifecycle drives the proxy through Run: holds made before Run are
// installed on open, packets are read, and on cancel what is held is
// dropped, every address unheld and the IO closed, with no goroutine left.
func TestRunLifecycle(t *testing.T) {
	f := newFakeIO()
	p, err := New(Options{IO: f, Limits: testLimits(Limits{}), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	if err := p.Hold([]netip.Addr{guest}, mac, tcpOnly); err != nil {
		t.Fatalf("hold before run: %v", err)
	}
	select {
	case <-p.Running():
		t.Fatal("Running closed before Run")
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Running() // the held address is installed by then
	if got := f.Events(); !slices.Equal(got, []string{"open", "hold 10.77.0.2 02:00:4a:53:00:02"}) {
		t.Fatalf("events when Running closed: %q", got)
	}
	f.in <- Packet{ID: 1, Data: synPacket(t, client, guest, 40001, 80, 1, 0)}
	f.in <- Packet{ID: 2, Data: synPacket(t, client, guest, 40002, 80, 1, 0)}
	f.in <- Packet{ID: 3, Data: []byte("junk")} // handled once 1 and 2 are
	for dropped(t, p, ReasonMalformed) != 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	want := []string{"open", "hold 10.77.0.2 02:00:4a:53:00:02", "drop 3", "drop 1", "drop 2", "unhold 10.77.0.2 ready=false", "close"}
	if got := f.Events(); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
	if got := dropped(t, p, ReasonShutdown); got != 2 {
		t.Errorf("dropped{shutdown} = %v, want 2", got)
	}
	if err := p.Run(context.Background()); err == nil {
		t.Error("second Run: no error")
	}
}

func TestBridgeMAC(t *testing.T) {
	a, b := BridgeMAC("br-jitsu"), BridgeMAC("br-other")
	if a.String() != BridgeMAC("br-jitsu").String() {
		t.Errorf("BridgeMAC is not stable: %v then %v", a, BridgeMAC("br-jitsu"))
	}
	if a.String() == b.String() {
		t.Errorf("two bridges got the same MAC %v", a)
	}
	for _, m := range []net.HardwareAddr{a, b} {
		if m[0]&1 != 0 || m[0]&2 == 0 || zeroMAC(m) {
			t.Errorf("BridgeMAC = %v, want a locally administered unicast address", m)
		}
	}
}

// testLimits fills the zero fields of l with the tests' bounds.
func testLimits(l Limits) Limits {
	if l.PerAddress <= 0 {
		l.PerAddress = 256
	}
	if l.Total <= 0 {
		l.Total = 4096
	}
	if l.Bytes <= 0 {
		l.Bytes = 1 << 20
	}
	if l.MaxAge <= 0 {
		l.MaxAge = 30 * time.Second
	}
	return l
}

func TestNewRequiresLimits(t *testing.T) {
	for _, l := range []Limits{{}, {PerAddress: 1, Total: 1, Bytes: 1}, {PerAddress: 1, Total: 1, MaxAge: time.Second}} {
		if _, err := New(Options{IO: newFakeIO(), Limits: l}); err == nil || !strings.Contains(err.Error(), "must be positive") {
			t.Errorf("New with limits %+v: %v, want an error", l, err)
		}
	}
}

// TestArmedHoldCallsOnPacket: an address held while its unikernel is
// stopped reports each held packet (SYN or, held for UDP, datagram) with
// its protocol, outside the proxy's lock (the callback may Hold again);
// datagrams to an address held for TCP only pass.
func TestArmedHoldCallsOnPacket(t *testing.T) {
	type seen struct {
		addr  netip.Addr
		proto uint8
	}
	var got []seen
	f := newFakeIO()
	var p *Proxy
	p, err := New(Options{IO: f, Limits: testLimits(Limits{}), OnPacket: func(a netip.Addr, proto uint8) {
		got = append(got, seen{a, proto})
		// The summoner holds again when it boots: no deadlock.
		if err := p.Hold([]netip.Addr{a}, mac, []uint8{6, 17}); err != nil {
			t.Errorf("Hold from OnPacket: %v", err)
		}
	}})
	if err := err; err != nil {
		t.Fatal(err)
	}
	p.running = true
	if err := p.Hold([]netip.Addr{guest}, mac, []uint8{6, 17}); err != nil {
		t.Fatal(err)
	}
	if err := p.Hold([]netip.Addr{guest6}, mac, tcpOnly); err != nil {
		t.Fatal(err)
	}
	p.handle(Packet{ID: 1, Data: synPacket(t, client, guest, 40001, 80, 1, 0)})
	p.handle(Packet{ID: 2, Data: udpPacket(t, client, guest, 40002, 53, 30)})
	p.handle(Packet{ID: 3, Data: udpPacket(t, client, guest, 40002, 53, 30)}) // a retransmission is held too
	p.handle(Packet{ID: 4, Data: udpPacket(t, client6, guest6, 40003, 53, 30)})
	want := []seen{{guest, 6}, {guest, 17}, {guest, 17}}
	if !slices.Equal(got, want) {
		t.Errorf("OnPacket calls %v, want %v", got, want)
	}
	if ev := f.Events(); ev[len(ev)-1] != "accept 4" {
		t.Errorf("datagram to an address held for TCP only: last event %q, want accept 4", ev[len(ev)-1])
	}
	if n, _ := p.Held(); n != 3 {
		t.Errorf("held %d packets, want the SYN and both datagrams", n)
	}
	replayed, err := p.Release([]netip.Addr{guest})
	if err != nil || replayed != 3 {
		t.Errorf("Release = %d, %v; want 3 replayed", replayed, err)
	}
	if ev := f.Events(); !slices.Equal(ev[len(ev)-3:], []string{"accept 1", "accept 2", "accept 3"}) {
		t.Errorf("replay order %q, want the packets in arrival order", ev[len(ev)-3:])
	}
}

// TestDropDiscardsDatagrams: a failed boot resets held TCP clients and
// discards held datagrams (no reset for UDP); holding for TCP only again
// discards the datagrams held so far.
func TestDropDiscardsDatagrams(t *testing.T) {
	p, f := newTestProxy(t, Limits{})
	if err := p.Hold([]netip.Addr{guest, guest2}, mac, []uint8{6, 17}); err != nil {
		t.Fatal(err)
	}
	p.handle(Packet{ID: 1, Data: synPacket(t, client, guest, 40001, 80, 1, 0)})
	p.handle(Packet{ID: 2, Data: udpPacket(t, client, guest, 40002, 53, 10)})
	p.handle(Packet{ID: 3, Data: udpPacket(t, client, guest2, 40003, 53, 10)})
	if err := p.Hold([]netip.Addr{guest2}, mac, tcpOnly); err != nil {
		t.Fatal(err)
	}
	if ev := f.Events(); !slices.Contains(ev, "drop 3") {
		t.Errorf("datagram held before UDP was turned off not dropped: %q", ev)
	}
	if err := p.Drop([]netip.Addr{guest}); err != nil {
		t.Fatal(err)
	}
	if len(f.written) != 1 {
		t.Errorf("%d packets written on Drop, want one RST (the SYN's), none for the datagram", len(f.written))
	}
	if ev := f.Events(); !slices.Contains(ev, "drop 2") || !slices.Contains(ev, "drop 1") {
		t.Errorf("events %q, want both held packets dropped", ev)
	}
	if err := p.Hold([]netip.Addr{guest}, mac, []uint8{1}); err == nil || !strings.Contains(err.Error(), "protocol 1") {
		t.Errorf("Hold with protocol 1: %v, want an error", err)
	}
}

// TestTrafficMetersHeldAndTracked: every address ever held or tracked is
// metered, and Traffic reports the IO's counters.
func TestTrafficMetersHeldAndTracked(t *testing.T) {
	p, f := newTestProxy(t, Limits{})
	if err := p.Hold([]netip.Addr{guest}, mac, tcpOnly); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Release([]netip.Addr{guest}); err != nil {
		t.Fatal(err)
	}
	if err := p.Track([]netip.Addr{guest2, netip.MustParseAddr("::ffff:10.77.0.9")}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.counters[guest] = 7
	f.mu.Unlock()
	m, err := p.Traffic(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]uint64{guest: 7, guest2: 0, netip.MustParseAddr("10.77.0.9"): 0}
	if len(m) != len(want) {
		t.Errorf("Traffic = %v, want %v", m, want)
	}
	for a, n := range want {
		if got, ok := m[a]; !ok || got != n {
			t.Errorf("Traffic[%v] = %d (%v), want %d", a, got, ok, n)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Traffic(ctx); err == nil {
		t.Error("Traffic with a cancelled context: no error")
	}
}

// TestOnPacketFrom: OnPacketFrom, when set, is called instead of OnPacket
// with each held packet's source address (admission control).
func TestOnPacketFrom(t *testing.T) {
	type seen struct{ src, addr netip.Addr }
	var got []seen
	plain := 0
	f := newFakeIO()
	p, err := New(Options{IO: f, Limits: testLimits(Limits{}),
		OnPacket:     func(netip.Addr, uint8) { plain++ },
		OnPacketFrom: func(src, a netip.Addr, _ uint8) { got = append(got, seen{src, a}) }})
	if err != nil {
		t.Fatal(err)
	}
	p.running = true
	if err := p.Hold([]netip.Addr{guest}, mac, []uint8{6, 17}); err != nil {
		t.Fatal(err)
	}
	p.handle(Packet{ID: 1, Data: synPacket(t, client, guest, 40001, 80, 1, 0)})
	p.handle(Packet{ID: 2, Data: udpPacket(t, client, guest, 40002, 53, 30)})
	want := []seen{{client, guest}, {client, guest}}
	if !slices.Equal(got, want) || plain != 0 {
		t.Fatalf("OnPacketFrom calls %v (OnPacket %d), want %v and none", got, plain, want)
	}
}
