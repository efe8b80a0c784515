package main

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// pinBridgeMAC makes the bridge's MAC address explicit, keeping its current
// value. A Linux bridge whose address was never set takes the lowest MAC
// of its ports and changes it whenever a port comes or goes: each guest
// that jitsu stops would then change the gateway's MAC under the feet of
// the guests still running (and of a suspended one when it resumes), and
// their replies would go to a MAC nobody has until their neighbour entry
// times out.
func pinBridgeMAC(bridge string) error {
	l, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %q: %w", bridge, err)
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return fmt.Errorf("bridge %q: is a %s, not a bridge", bridge, l.Type())
	}
	if err := netlink.LinkSetHardwareAddr(l, l.Attrs().HardwareAddr); err != nil {
		return fmt.Errorf("bridge %q: pin its MAC address %s: %w", bridge, l.Attrs().HardwareAddr, err)
	}
	return nil
}
