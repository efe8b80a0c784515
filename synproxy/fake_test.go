package synproxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// fakeIO is an in-memory PacketIO: packets are fed through in, every call
// is logged as a line in events, in order.
type fakeIO struct {
	in chan Packet

	mu       sync.Mutex
	events   []string
	written  [][]byte
	holdErr  error
	counters map[netip.Addr]uint64
}

func newFakeIO() *fakeIO { return &fakeIO{in: make(chan Packet)} }

func (f *fakeIO) log(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, fmt.Sprintf(format, args...))
}

func (f *fakeIO) Events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

func (f *fakeIO) Open(ctx context.Context) error { f.log("open"); return nil }
func (f *fakeIO) Close() error                   { f.log("close"); return nil }

func (f *fakeIO) ReadPacket(ctx context.Context) (Packet, error) {
	select {
	case <-ctx.Done():
		return Packet{}, ctx.Err()
	case p := <-f.in:
		return p, nil
	}
}

func (f *fakeIO) Verdict(id uint32, accept bool) error {
	if accept {
		f.log("accept %d", id)
	} else {
		f.log("drop %d", id)
	}
	return nil
}

func (f *fakeIO) WritePacket(pkt []byte) error {
	f.mu.Lock()
	f.written = append(f.written, append([]byte(nil), pkt...))
	f.mu.Unlock()
	f.log("write %d", len(pkt))
	return nil
}

func (f *fakeIO) Hold(a netip.Addr, mac net.HardwareAddr, udp bool) error {
	if udp {
		f.log("hold %v %v udp", a, mac)
	} else {
		f.log("hold %v %v", a, mac)
	}
	return f.holdErr
}

func (f *fakeIO) Meter(a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counters == nil {
		f.counters = map[netip.Addr]uint64{}
	}
	f.counters[a] += 0
	return nil
}

func (f *fakeIO) Counters() (map[netip.Addr]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[netip.Addr]uint64, len(f.counters))
	for a, n := range f.counters {
		out[a] = n
	}
	return out, nil
}

func (f *fakeIO) Unhold(a netip.Addr, ready bool) error {
	f.log("unhold %v ready=%v", a, ready)
	return nil
}

// synPacket builds a client SYN from src:sport to dst:dport with seq and
// payload bytes of data.
func synPacket(t testing.TB, src, dst netip.Addr, sport, dport uint16, seq uint32, payload int) []byte {
	t.Helper()
	return buildTCP(t, src, dst, &layers.TCP{
		SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport),
		Seq: seq, SYN: true, Window: 64240,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}}},
	}, make([]byte, payload))
}

func buildTCP(t testing.TB, src, dst netip.Addr, tcp *layers.TCP, payload []byte) []byte {
	t.Helper()
	return buildIP(t, src, dst, layers.IPProtocolTCP, tcp, payload)
}

// transport is a TCP or UDP header to serialize over IP.
type transport interface {
	gopacket.SerializableLayer
	SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
}

// buildIP serializes l4 with payload in an IPv4 or IPv6 packet (by src's
// family) from src to dst, lengths and checksums computed.
func buildIP(t testing.TB, src, dst netip.Addr, proto layers.IPProtocol, l4 transport, payload []byte) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var ip gopacket.SerializableLayer
	if src.Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		_ = l4.SetNetworkLayerForChecksum(v4)
		ip = v4
	} else {
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		_ = l4.SetNetworkLayerForChecksum(v6)
		ip = v6
	}
	if err := gopacket.SerializeLayers(buf, opts, ip, l4, gopacket.Payload(payload)); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// discardIO is a PacketIO that does nothing, for benchmarks.
type discardIO struct{}

func (discardIO) Open(context.Context) error { return nil }
func (discardIO) Close() error               { return nil }
func (discardIO) ReadPacket(ctx context.Context) (Packet, error) {
	<-ctx.Done()
	return Packet{}, ctx.Err()
}
func (discardIO) Verdict(uint32, bool) error                    { return nil }
func (discardIO) WritePacket([]byte) error                      { return nil }
func (discardIO) Hold(netip.Addr, net.HardwareAddr, bool) error { return nil }
func (discardIO) Meter(netip.Addr) error                        { return nil }
func (discardIO) Counters() (map[netip.Addr]uint64, error)      { return nil, nil }
func (discardIO) Unhold(netip.Addr, bool) error                 { return nil }

// tcpOnly holds TCP SYNs only.
var tcpOnly = []uint8{6}

// udpPacket builds a datagram from src:sport to dst:dport with payload
// bytes of data.
func udpPacket(t testing.TB, src, dst netip.Addr, sport, dport uint16, payload int) []byte {
	t.Helper()
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	return buildIP(t, src, dst, layers.IPProtocolUDP, udp, make([]byte, payload))
}
