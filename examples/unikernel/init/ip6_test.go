package main

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"
)

// TestNetlinkMessages: the RTM_NEWADDR and RTM_NEWROUTE requests /init
// sends parse back as netlink messages with the address, prefix length,
// gateway and interface they were built from.
func TestNetlinkMessages(t *testing.T) {
	addr := netip.MustParsePrefix("fd00:213::5/64")
	gw := netip.MustParseAddr("fd00:213::1")
	tests := []struct {
		name     string
		msg      []byte
		typ      uint16
		bodyLen  int
		attrType uint16
		want     netip.Addr
	}{
		{"address", addrMsg(3, addr, 1), syscall.RTM_NEWADDR, syscall.SizeofIfAddrmsg, syscall.IFA_LOCAL, addr.Addr()},
		{"route", routeMsg(3, gw, 2), syscall.RTM_NEWROUTE, syscall.SizeofRtMsg, syscall.RTA_GATEWAY, gw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := syscall.ParseNetlinkMessage(tt.msg)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("parse: %v, %d messages", err, len(msgs))
			}
			m := msgs[0]
			if m.Header.Type != tt.typ || m.Header.Len != uint32(len(tt.msg)) {
				t.Fatalf("header %+v, want type %d length %d", m.Header, tt.typ, len(tt.msg))
			}
			if m.Data[0] != syscall.AF_INET6 {
				t.Errorf("family %d, want AF_INET6", m.Data[0])
			}
			attrs, err := syscall.ParseNetlinkRouteAttr(&m)
			if err != nil {
				t.Fatalf("attributes: %v", err)
			}
			found := false
			for _, a := range attrs {
				if a.Attr.Type == tt.attrType {
					found = netip.AddrFrom16([16]byte(a.Value)) == tt.want
				}
				if tt.typ == syscall.RTM_NEWROUTE && a.Attr.Type == syscall.RTA_OIF && binary.NativeEndian.Uint32(a.Value) != 3 {
					t.Errorf("route's interface %d, want 3", binary.NativeEndian.Uint32(a.Value))
				}
			}
			if !found {
				t.Errorf("no attribute %d with %s in %v", tt.attrType, tt.want, attrs)
			}
			if tt.typ == syscall.RTM_NEWADDR && (m.Data[1] != 64 || binary.NativeEndian.Uint32(m.Data[4:]) != 3) {
				t.Errorf("prefix length %d, index %d; want 64 and 3", m.Data[1], binary.NativeEndian.Uint32(m.Data[4:]))
			}
		})
	}
}
