package frontdoor

import (
	"encoding/binary"
	"net/netip"
)

// proxySignature starts every PROXY protocol v2 header.
var proxySignature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// proxyHeader returns a PROXY protocol v2 header (version 2, command
// PROXY, TCP) for a connection from src to dst. Addresses of different
// families (or IPv4-mapped IPv6 on one side) are sent as IPv4 when both
// unmap to IPv4, else as IPv6.
func proxyHeader(src, dst netip.AddrPort) []byte {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	h := append([]byte(nil), proxySignature...)
	h = append(h, 0x21) // version 2, PROXY
	if sa.Is4() && da.Is4() {
		h = append(h, 0x11, 0, 12) // AF_INET, STREAM; 12 address bytes
		s4, d4 := sa.As4(), da.As4()
		h = append(h, s4[:]...)
		h = append(h, d4[:]...)
	} else {
		h = append(h, 0x21, 0, 36) // AF_INET6, STREAM; 36 address bytes
		s16, d16 := sa.As16(), da.As16()
		h = append(h, s16[:]...)
		h = append(h, d16[:]...)
	}
	h = binary.BigEndian.AppendUint16(h, src.Port())
	h = binary.BigEndian.AppendUint16(h, dst.Port())
	return h
}
