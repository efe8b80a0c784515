package synproxy

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// FuzzDecode feeds arbitrary bytes to the decoder: it must never panic,
// and whatever it accepts must be a consistent SYN whose reset builds and
// answers it.
func FuzzDecode(f *testing.F) {
	f.Add(synPacket(f, client, guest, 40001, 80, 1, 0))
	f.Add(synPacket(f, client6, guest6, 40001, 443, 0xffffffff, 5))
	f.Add([]byte{0x45})
	f.Add([]byte{0x60, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decode(data)
		if err != nil {
			return
		}
		if s.proto == protoUDP {
			// A datagram may be longer than the queue's copy of it.
			if s.length < 28 || s.sport == 0 || s.dport == 0 {
				t.Fatalf("decode accepted an inconsistent datagram %+v from %d bytes", s, len(data))
			}
			return
		}
		if s.length > len(data) || s.length < 20 || s.sport == 0 || s.dport == 0 {
			t.Fatalf("decode accepted an inconsistent SYN %+v from %d bytes", s, len(data))
		}
		rst, err := buildReset(s)
		if err != nil {
			t.Fatalf("build reset for %+v: %v", s, err)
		}
		first := layers.LayerTypeIPv4
		if !s.dst.Is4() {
			first = layers.LayerTypeIPv6
		}
		pkt := gopacket.NewPacket(rst, first, gopacket.Default)
		tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil || !tcp.RST || uint16(tcp.DstPort) != s.sport || tcp.Ack != s.seq+1+uint32(s.payload) {
			t.Fatalf("reset %v does not answer %+v", tcp, s)
		}
		src, _ := netip.AddrFromSlice(pkt.NetworkLayer().NetworkFlow().Dst().Raw())
		if src.Unmap() != s.src.Unmap() {
			t.Fatalf("reset goes to %v, want %v", src, s.src)
		}
	})
}
