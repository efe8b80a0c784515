package roottest

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/internal/nettest"
	"github.com/jitsu-unikernel/jitsu/synproxy"
)

// packetSeen is one OnPacket call.
type packetSeen struct {
	addr  netip.Addr
	proto uint8
}

// TestArmedSummons: an address held while its unikernel is stopped
// (armed) reports the first SYN, or the first datagram when held for UDP,
// through OnPacket; once the "unikernel" is up and the address released,
// the held SYN completes the connection and the held datagram is
// delivered. IPv4 and IPv6, routed and host-local clients.
func TestArmedSummons(t *testing.T) {
	tp := newTopo(t)
	seen := make(chan packetSeen, 64)
	p := tp.startProxyOpts(t, synproxy.Options{OnPacket: func(a netip.Addr, proto uint8) {
		select {
		case seen <- packetSeen{a, proto}:
		default:
		}
	}})
	for _, proto := range []struct {
		name string
		num  uint8
	}{{"tcp", 6}, {"udp", 17}} {
		for _, pa := range tp.paths() {
			t.Run(proto.name+" "+pa.name, func(t *testing.T) {
				for len(seen) > 0 {
					<-seen
				}
				if err := p.Hold([]netip.Addr{pa.addr}, tp.mac, tcpUDP); err != nil {
					t.Fatalf("arm: %v", err)
				}
				if proto.num == 6 {
					armedTCP(t, tp, p, seen, pa.from, pa.addr)
				} else {
					armedUDP(t, tp, p, seen, pa.from, pa.addr)
				}
			})
		}
	}
}

// waitSeen waits for OnPacket(addr, proto).
func waitSeen(t *testing.T, seen <-chan packetSeen, addr netip.Addr, proto uint8) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-seen:
			if s.addr == addr && s.proto == proto {
				return
			}
		case <-timeout:
			t.Fatalf("no OnPacket(%v, %d) within 10 s", addr, proto)
		}
	}
}

// armedTCP: the client connects to the armed address; the SYN summons;
// the guest listens, the address is released, the connect completes.
func armedTCP(t *testing.T, tp *topo, p *runningProxy, seen <-chan packetSeen, from *nettest.NS, addr netip.Addr) {
	errc := make(chan error, 1)
	go func() {
		c, _, err := dial(from, addr, 10*time.Second)
		if c != nil {
			c.Close()
		}
		errc <- err
	}()
	waitSeen(t, seen, addr, 6)
	accepted := make(chan struct{}, 1)
	ln, _ := listen(t, tp.guest, accepted)
	defer ln.Close()
	if n, err := p.Release([]netip.Addr{addr}); err != nil || n < 1 {
		t.Errorf("release: %d replayed, %v; want the SYN", n, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("connect through the armed hold: %v", err)
	}
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the guest never accepted the summoning connection")
	}
}

// armedUDP: the client sends one datagram to the armed address; it
// summons; the guest binds, the address is released, and the one
// datagram (never retransmitted) arrives.
func armedUDP(t *testing.T, tp *topo, p *runningProxy, seen <-chan packetSeen, from *nettest.NS, addr netip.Addr) {
	msg := fmt.Sprintf("summon %v", addr)
	err := from.Do(func() error {
		c, err := net.Dial("udp", netip.AddrPortFrom(addr, port).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(msg))
		return err
	})
	if err != nil {
		t.Fatalf("send datagram: %v", err)
	}
	waitSeen(t, seen, addr, 17)
	var pc net.PacketConn
	if err := tp.guest.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatalf("guest listen udp: %v", err)
	}
	defer pc.Close()
	if n, err := p.Release([]netip.Addr{addr}); err != nil || n != 1 {
		t.Errorf("release: %d replayed, %v; want the datagram", n, err)
	}
	buf := make([]byte, 256)
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("the held datagram never arrived: %v", err)
	}
	if string(buf[:n]) != msg {
		t.Errorf("guest got %q, want %q", buf[:n], msg)
	}
}
