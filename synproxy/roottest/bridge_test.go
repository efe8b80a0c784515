package roottest

import (
	"net"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/jitsu-unikernel/jitsu/internal/nettest"
	"github.com/jitsu-unikernel/jitsu/synproxy"
)

// TestPinBridgeMAC: a bridge that a port left (MAC 00:00:00:00:00:00) gets
// the MAC derived from its name; a bridge with a MAC keeps it, pinned.
func TestPinBridgeMAC(t *testing.T) {
	nettestRequire(t)
	h := nettest.NewNS(t, "b")
	h.Bridge("br-used")
	h.IP("link", "add", "tap-x", "type", "veth", "peer", "name", "tap-y")
	h.IP("link", "set", "tap-x", "master", "br-used")
	h.IP("link", "del", "tap-x")
	// Go reports an all-zero MAC as none.
	if got := h.MAC("br-used"); len(got) != 0 && got.String() != "00:00:00:00:00:00" {
		t.Fatalf("bridge MAC after its last port left = %v, want 00:00:00:00:00:00 (the kernel changed?)", got)
	}
	var mac net.HardwareAddr
	err := h.Do(func() (err error) {
		mac, err = synproxy.PinBridgeMAC("br-used", zaptest.NewLogger(t))
		return err
	})
	if err != nil {
		t.Fatalf("PinBridgeMAC on a bridge whose last port left: %v", err)
	}
	want := synproxy.BridgeMAC("br-used")
	if mac.String() != want.String() || h.MAC("br-used").String() != want.String() {
		t.Errorf("bridge MAC = %v (returned %v), want %v", h.MAC("br-used"), mac, want)
	}

	// A bridge with a port keeps the MAC it had, now fixed.
	h.Bridge("br-fresh")
	h.IP("link", "add", "port0", "address", "02:11:22:33:44:55", "type", "veth", "peer", "name", "port1")
	h.IP("link", "set", "port0", "master", "br-fresh")
	before := h.MAC("br-fresh")
	if err := h.Do(func() error { _, err := synproxy.PinBridgeMAC("br-fresh", nil); return err }); err != nil {
		t.Fatalf("PinBridgeMAC: %v", err)
	}
	h.IP("link", "del", "port0")
	if after := h.MAC("br-fresh"); after.String() != before.String() {
		t.Errorf("pinned bridge MAC changed from %v to %v when its port left", before, after)
	}
	if err := h.Do(func() error { _, err := synproxy.PinBridgeMAC("lo", nil); return err }); err == nil || !strings.Contains(err.Error(), "not a bridge") {
		t.Errorf("PinBridgeMAC(lo) = %v, want a not-a-bridge error", err)
	}
}
