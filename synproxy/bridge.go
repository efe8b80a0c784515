package synproxy

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"net"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
)

// BridgeMAC is the MAC address jitsu gives a bridge whose own reads
// 00:00:00:00:00:00 (a bridge whose address was never set, once its last
// port has left): a locally administered unicast address derived from the
// bridge's name, stable across runs and hosts.
func BridgeMAC(bridge string) net.HardwareAddr {
	h := fnv.New64a()
	h.Write([]byte("jitsu bridge " + bridge))
	s := h.Sum(nil)
	// 0x02: locally administered, unicast; the guests' 52:54:00 prefix
	// never collides with it.
	return net.HardwareAddr{0x02, s[0], s[1], s[2], s[3], s[4]}
}

// zeroMAC reports whether mac is missing or all zero.
func zeroMAC(mac net.HardwareAddr) bool {
	return len(mac) == 0 || bytes.Equal(mac, make([]byte, len(mac)))
}

// PinBridgeMAC makes the bridge's MAC address explicit, keeping its
// current value. A Linux bridge whose address was never set takes the
// lowest MAC of its ports and changes it whenever a port comes or goes:
// each guest that jitsu stops would then change the gateway's MAC under the
// feet of the guests still running (and of a suspended one when it
// resumes), and their replies would go to a MAC nobody has until their
// neighbour entry times out. Once its last port has left, such a bridge
// reads 00:00:00:00:00:00, which cannot be set: it gets BridgeMAC(bridge)
// instead, and the change is logged. PinBridgeMAC returns the MAC the
// bridge has on return.
func PinBridgeMAC(bridge string, log *zap.Logger) (net.HardwareAddr, error) {
	if log == nil {
		log = zap.NewNop()
	}
	l, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil, fmt.Errorf("bridge %q: %w", bridge, err)
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("bridge %q: is a %s, not a bridge", bridge, l.Type())
	}
	mac := l.Attrs().HardwareAddr
	if zeroMAC(mac) {
		mac = BridgeMAC(bridge)
		log.Info("bridge has no MAC address (its last port left); giving it one derived from its name",
			zap.String("bridge", bridge), zap.Stringer("mac", mac))
	}
	if err := netlink.LinkSetHardwareAddr(l, mac); err != nil {
		return nil, fmt.Errorf("bridge %q: pin its MAC address %s: %w", bridge, mac, err)
	}
	return mac, nil
}
