package synproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// IP protocol numbers of the packets the proxy holds.
const (
	protoTCP = 6
	protoUDP = 17
)

// flowKey identifies one client connection attempt: its 4-tuple. A UDP
// datagram gets a unique n, so that none replaces another.
type flowKey struct {
	src, dst     netip.Addr
	sport, dport uint16
	n            uint64 // UDP only: the datagram's sequence number in the hold
}

// syn is what the proxy keeps of a decoded client SYN, or of a UDP
// datagram (proto protoUDP).
type syn struct {
	flowKey
	proto   uint8  // protoTCP or protoUDP
	seq     uint32 // the client's initial sequence number
	payload int    // TCP payload bytes (TCP Fast Open data), counted in the reset's ack
	length  int    // whole IP packet length, for the byte bound
}

// errMalformed is wrapped by every decode error: the packet is dropped and
// counted with reason "malformed".
var errMalformed = errors.New("malformed packet")

// decode parses an IP packet (no link-layer header) and returns the SYN it
// carries. Anything but a well-formed, unfragmented IPv4 or IPv6 packet
// carrying a TCP segment with SYN set and ACK, RST and FIN clear is an error.
func decode(data []byte) (syn, error) {
	if len(data) < 1 {
		return syn{}, fmt.Errorf("%w: empty", errMalformed)
	}
	var (
		s       syn
		tcpData []byte
	)
	switch data[0] >> 4 {
	case 4:
		var ip layers.IPv4
		if err := ip.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
			return syn{}, fmt.Errorf("%w: ipv4: %v", errMalformed, err)
		}
		if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
			return syn{}, fmt.Errorf("%w: ipv4 fragment", errMalformed)
		}
		if ip.Protocol != layers.IPProtocolTCP && ip.Protocol != layers.IPProtocolUDP {
			return syn{}, fmt.Errorf("%w: ipv4 protocol %d", errMalformed, ip.Protocol)
		}
		s.proto = uint8(ip.Protocol)
		src, ok1 := netip.AddrFromSlice(ip.SrcIP.To4())
		dst, ok2 := netip.AddrFromSlice(ip.DstIP.To4())
		if !ok1 || !ok2 {
			return syn{}, fmt.Errorf("%w: ipv4 addresses", errMalformed)
		}
		s.src, s.dst = src, dst
		s.length = int(ip.Length)
		tcpData = ip.Payload
	case 6:
		var ip layers.IPv6
		if err := ip.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
			return syn{}, fmt.Errorf("%w: ipv6: %v", errMalformed, err)
		}
		// Extension headers (and jumbograms) are not followed: a client SYN
		// has none, and anything else is odd enough to drop.
		if ip.NextHeader != layers.IPProtocolTCP && ip.NextHeader != layers.IPProtocolUDP {
			return syn{}, fmt.Errorf("%w: ipv6 next header %d", errMalformed, ip.NextHeader)
		}
		s.proto = uint8(ip.NextHeader)
		src, ok1 := netip.AddrFromSlice(ip.SrcIP.To16())
		dst, ok2 := netip.AddrFromSlice(ip.DstIP.To16())
		if !ok1 || !ok2 {
			return syn{}, fmt.Errorf("%w: ipv6 addresses", errMalformed)
		}
		s.src, s.dst = src, dst
		s.length = 40 + int(ip.Length)
		tcpData = ip.Payload
	default:
		return syn{}, fmt.Errorf("%w: ip version %d", errMalformed, data[0]>>4)
	}
	// The queue copies whole SYNs (copyRange is above the longest): a
	// length that does not match is a truncated packet. A datagram may be
	// longer than the copy: its header is all the proxy needs.
	if (s.length > len(data) && s.proto == protoTCP) || s.length < 20 {
		return syn{}, fmt.Errorf("%w: length %d, have %d bytes", errMalformed, s.length, len(data))
	}
	if !s.src.IsValid() || s.src.IsUnspecified() || s.src.IsMulticast() || s.dst.IsMulticast() {
		return syn{}, fmt.Errorf("%w: address %v -> %v", errMalformed, s.src, s.dst)
	}
	if s.proto == protoUDP {
		return decodeUDP(s, tcpData, data)
	}
	var tcp layers.TCP
	if err := tcp.DecodeFromBytes(tcpData, gopacket.NilDecodeFeedback); err != nil {
		return syn{}, fmt.Errorf("%w: tcp: %v", errMalformed, err)
	}
	if !tcp.SYN || tcp.ACK || tcp.RST || tcp.FIN {
		return syn{}, fmt.Errorf("%w: tcp flags are not a client SYN", errMalformed)
	}
	if tcp.SrcPort == 0 || tcp.DstPort == 0 {
		return syn{}, fmt.Errorf("%w: tcp port 0", errMalformed)
	}
	s.sport, s.dport = uint16(tcp.SrcPort), uint16(tcp.DstPort)
	s.seq = tcp.Seq
	s.payload = len(tcp.Payload)
	return s, nil
}

// decodeUDP checks the UDP header of a datagram whose IP header s holds.
// The queue copies only the first bytes of a packet: the UDP length is
// checked against the IP length, not against the bytes at hand.
func decodeUDP(s syn, udpData, data []byte) (syn, error) {
	if len(udpData) < 8 {
		return syn{}, fmt.Errorf("%w: udp header cut", errMalformed)
	}
	sport, dport := binary.BigEndian.Uint16(udpData[0:]), binary.BigEndian.Uint16(udpData[2:])
	ulen := int(binary.BigEndian.Uint16(udpData[4:]))
	ipHeader := len(data) - len(udpData)
	if ulen < 8 || ipHeader+ulen != s.length {
		return syn{}, fmt.Errorf("%w: udp length %d in a %d-byte packet", errMalformed, ulen, s.length)
	}
	if sport == 0 || dport == 0 {
		return syn{}, fmt.Errorf("%w: udp port 0", errMalformed)
	}
	s.sport, s.dport = sport, dport
	return s, nil
}

// buildReset returns the IP packet a closed port would send in answer to s:
// RST+ACK from the held address to the client, acknowledging the SYN (and
// any data it carried), so the client's connect fails at once with
// ECONNREFUSED.
func buildReset(s syn) ([]byte, error) {
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(s.dport),
		DstPort: layers.TCPPort(s.sport),
		Seq:     0,
		Ack:     s.seq + 1 + uint32(s.payload),
		RST:     true,
		ACK:     true,
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var err error
	if s.dst.Is4() {
		ip := &layers.IPv4{
			Version:  4,
			TTL:      64,
			Protocol: layers.IPProtocolTCP,
			Flags:    layers.IPv4DontFragment,
			SrcIP:    s.dst.AsSlice(),
			DstIP:    s.src.AsSlice(),
		}
		if err = tcp.SetNetworkLayerForChecksum(ip); err == nil {
			err = gopacket.SerializeLayers(buf, opts, ip, tcp)
		}
	} else {
		ip := &layers.IPv6{
			Version:    6,
			HopLimit:   64,
			NextHeader: layers.IPProtocolTCP,
			SrcIP:      s.dst.AsSlice(),
			DstIP:      s.src.AsSlice(),
		}
		if err = tcp.SetNetworkLayerForChecksum(ip); err == nil {
			err = gopacket.SerializeLayers(buf, opts, ip, tcp)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("build reset to %v:%d: %w", s.src, s.sport, err)
	}
	return buf.Bytes(), nil
}
