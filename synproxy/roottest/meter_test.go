package roottest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/synproxy"
)

// TestTrafficCountsClientsNotChatter: the Meter counts unicast traffic
// between a guest address and its clients (routed and host-local, IPv4
// and IPv6, both directions), and none of the guest's own chatter:
// broadcast, multicast, router solicitations, MLD reports, neighbour
// solicitations to the gateway, ARP.
func TestTrafficCountsClientsNotChatter(t *testing.T) {
	tp := newTopo(t)
	p := tp.startProxyOpts(t, synproxy.Options{})
	if err := p.Track([]netip.Addr{guest4, guest6}); err != nil {
		t.Fatalf("track: %v", err)
	}
	// Let the namespaces' own start-up traffic (DAD, first neighbour
	// resolutions) settle, then take the baseline.
	time.Sleep(200 * time.Millisecond)
	before := traffic(t, p)

	chatter(t, tp)
	time.Sleep(100 * time.Millisecond)
	after := traffic(t, p)
	for _, a := range []netip.Addr{guest4, guest6} {
		if after[a] != before[a] {
			t.Errorf("guest chatter counted for %v: %d -> %d packets", a, before[a], after[a])
		}
	}

	// Clients: a small TCP exchange from a routed client and from the host,
	// each way, in both families.
	ln4, _ := listen(t, tp.guest, nil)
	defer ln4.Close()
	for _, tc := range tp.paths() {
		t.Run(tc.name, func(t *testing.T) {
			start := traffic(t, p)[tc.addr]
			c, _, err := dial(tc.from, tc.addr, 5*time.Second)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			c.Close()
			time.Sleep(50 * time.Millisecond) // the FIN exchange
			// SYN, SYN-ACK, ACK, and the FINs: at least 4 packets, both ways.
			if got := traffic(t, p)[tc.addr] - start; got < 4 {
				t.Errorf("a client connection counted %d packets, want at least 4", got)
			}
		})
	}
}

func traffic(t *testing.T, p *runningProxy) map[netip.Addr]uint64 {
	t.Helper()
	m, err := p.Traffic(context.Background())
	if err != nil {
		t.Fatalf("traffic: %v", err)
	}
	return m
}

// chatter makes the guest stand-in send what a booting Linux guest sends
// on its own: broadcast and multicast datagrams, an IPv6 router
// solicitation and MLD report (to multicast groups), a unicast neighbour
// solicitation to the gateway's global address, ARP requests and multicast
// neighbour solicitations (resolving a neighbour that is not there, after
// flushing its neighbour table).
func chatter(t *testing.T, tp *topo) {
	t.Helper()
	g := tp.guest
	g.Sysctl("net.ipv4.icmp_echo_ignore_broadcasts", "0")
	g.IP("neigh", "flush", "dev", "eth0")
	err := g.Do(func() error {
		// The last two only make the guest resolve a neighbour that is not
		// there: ARP requests and multicast neighbour solicitations.
		for _, dst := range []string{"10.77.0.255:9", "255.255.255.255:9", "224.0.0.251:5353", "[ff02::1%eth0]:9",
			"[ff02::fb%eth0]:5353", "10.77.0.99:9", "[fd77::99]:9"} {
			if err := sendUDP(dst); err != nil {
				return fmt.Errorf("send to %s: %w", dst, err)
			}
		}
		// ICMPv6 from the guest's global address: RS (133) to ff02::2, an
		// MLDv2 report (143) to ff02::16, and a unicast NS (135) to the
		// gateway's global address.
		for _, m := range []struct {
			typ byte
			dst string
		}{{133, "ff02::2%eth0"}, {143, "ff02::16%eth0"}, {135, "fd77::1"}} {
			if err := sendICMPv6(m.typ, m.dst); err != nil {
				return fmt.Errorf("send icmpv6 type %d to %s: %w", m.typ, m.dst, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("guest chatter: %v", err)
	}
}

func sendUDP(dst string) error {
	c, err := net.Dial("udp", dst)
	if err != nil {
		return err
	}
	defer c.Close()
	if uc, ok := c.(*net.UDPConn); ok {
		if rc, err := uc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { setBroadcast(int(fd)) })
		}
	}
	_, err = c.Write([]byte("chatter"))
	return err
}

// sendICMPv6 sends a bare ICMPv6 message of type typ from the guest's
// global address (the kernel fills in the checksum).
func sendICMPv6(typ byte, dst string) error {
	c, err := net.ListenPacket("ip6:ipv6-icmp", guest6.String())
	if err != nil {
		return err
	}
	defer c.Close()
	a, err := net.ResolveIPAddr("ip6", dst)
	if err != nil {
		return err
	}
	msg := make([]byte, 24) // type, code, checksum, reserved, target/group
	msg[0] = typ
	_, err = c.WriteTo(msg, a)
	return err
}

// TestMeterManyAddresses: metering 2,000 addresses (a large config) adds
// set elements, not rules: the meter chain keeps its fixed rules, which
// every packet through the host's hooks runs (one rule per address cost
// each packet a linear scan), and a metered address among them still
// counts its client's traffic while the others stay at 0.
func TestMeterManyAddresses(t *testing.T) {
	tp := newTopo(t)
	p := tp.startProxyOpts(t, synproxy.Options{})
	var many []netip.Addr
	for i := range 2000 {
		many = append(many, netip.AddrFrom4([4]byte{10, 90, byte(i >> 8), byte(i)}))
	}
	if err := p.Track(append(many, guest4)); err != nil {
		t.Fatalf("track: %v", err)
	}
	// (nft cannot name a chain called meter, a keyword: list the table;
	// only the meter chain's rules refer to the meter sets.)
	out, err := tp.host.Exec("nft", "list", "table", "inet", synproxy.TableName)
	if err != nil {
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	if n := strings.Count(out, "@meter"); n != 6 {
		t.Errorf("meter chain has %d rules counting in a set, want 6 (2 IPv4, 4 IPv6) whatever the addresses:\n%s", n, out)
	}
	ln, _ := listen(t, tp.guest, nil)
	defer ln.Close()
	before := traffic(t, p)
	if len(before) != len(many)+1 {
		t.Errorf("traffic reports %d addresses, want %d", len(before), len(many)+1)
	}
	c, _, err := dial(tp.client, guest4, 5*time.Second)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	c.Close()
	time.Sleep(50 * time.Millisecond)
	after := traffic(t, p)
	if got := after[guest4] - before[guest4]; got < 4 {
		t.Errorf("a client connection counted %d packets, want at least 4", got)
	}
	for _, a := range many {
		if after[a] != 0 {
			t.Errorf("%v counted %d packets, want 0", a, after[a])
			break
		}
	}
}
