// Package nettest builds throw-away network topologies for root-tier
// tests that need no libvirtd: network namespaces, bridges, veth pairs,
// addresses and routes, and runs Go code inside a namespace (through
// sandbox.InNamespace). Everything a test
// creates is deleted in t.Cleanup, also when the test fails.
//
// Tests that use it call Require first: it skips the test when not run as
// root, and fails it when run as root in CI (CI=true) but the system lacks
// something the tier needs, so a broken CI machine cannot pass silently.
package nettest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jitsu-unikernel/jitsu/internal/sandbox"
)

// Require skips t unless it runs as root, and checks that the tools in
// tools (plus ip) exist and that a network namespace can be created. When
// something is missing it fails t if the environment variable CI is "true",
// and skips it otherwise.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("root tier: needs root (network namespaces, nftables, NFQUEUE)")
	}
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") == "true" {
			t.Fatalf("root tier in CI: %s", msg)
		}
		t.Skipf("root tier: %s", msg)
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing("%s not found: %v", tool, err)
		}
	}
	name := fmt.Sprintf("jtprobe%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		missing("cannot create a network namespace: %v: %s", err, out)
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
}

var seq atomic.Int64

// NS is a named network namespace created by the test.
type NS struct {
	t    testing.TB
	Name string
}

// NewNS creates a namespace (named after prefix, the process and a counter),
// brings its loopback up and deletes it in t.Cleanup.
func NewNS(t testing.TB, prefix string) *NS {
	t.Helper()
	name := fmt.Sprintf("jt-%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("delete netns %s: %v: %s", name, err, out)
		}
	})
	n := &NS{t: t, Name: name}
	n.IP("link", "set", "lo", "up")
	return n
}

// Path is the namespace's bind-mount path.
func (n *NS) Path() string { return "/run/netns/" + n.Name }

// Run runs a command and fails t with its output if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// IP runs `ip -n NAME args...` and fails the test if it fails.
func (n *NS) IP(args ...string) string {
	n.t.Helper()
	return Run(n.t, "ip", append([]string{"-n", n.Name}, args...)...)
}

// Exec runs a command inside the namespace and returns its output.
func (n *NS) Exec(name string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...).CombinedOutput()
	return string(out), err
}

// Sysctl sets a sysctl (dotted key) inside the namespace.
func (n *NS) Sysctl(key, value string) {
	n.t.Helper()
	Run(n.t, "ip", "netns", "exec", n.Name, "sysctl", "-qw", key+"="+value)
}

// Do runs fn on an OS thread inside the namespace and returns its error,
// with the thread semantics of sandbox.InNamespace (the one
// implementation): sockets fn creates stay in the namespace and may be used
// from any goroutine afterwards; the thread is switched back afterwards.
func (n *NS) Do(fn func() error) error { return sandbox.InNamespace(n.Name, fn) }

// Bridge creates a bridge in n and brings it up.
func (n *NS) Bridge(name string) {
	n.t.Helper()
	n.IP("link", "add", name, "type", "bridge")
	n.IP("link", "set", name, "up")
}

// Veth creates a veth pair, aName in a and bName in b, with the MAC address
// mac on aName if mac is not empty, and brings both ends up. Deleting the
// namespaces deletes the pair.
func Veth(t testing.TB, a *NS, aName string, mac string, b *NS, bName string) {
	t.Helper()
	args := []string{"link", "add", aName}
	if mac != "" {
		args = append(args, "address", mac)
	}
	args = append(args, "type", "veth", "peer", "name", bName, "netns", b.Name)
	a.IP(args...)
	a.IP("link", "set", aName, "up")
	b.IP("link", "set", bName, "up")
}

// Addr adds an address (CIDR) to dev, without IPv6 duplicate address
// detection so it is usable at once.
func (n *NS) Addr(dev, cidr string) {
	n.t.Helper()
	args := []string{"addr", "add", cidr, "dev", dev}
	if strings.Contains(cidr, ":") {
		args = append(args, "nodad")
	}
	n.IP(args...)
}

// MAC returns the hardware address of dev.
func (n *NS) MAC(dev string) net.HardwareAddr {
	n.t.Helper()
	var mac net.HardwareAddr
	err := n.Do(func() error {
		i, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		mac = i.HardwareAddr
		return nil
	})
	if err != nil {
		n.t.Fatalf("mac of %s in %s: %v", dev, n.Name, err)
	}
	return mac
}

// Run runs a command inside the namespace and fails the test if it fails.
func (n *NS) Run(name string, args ...string) string {
	n.t.Helper()
	return Run(n.t, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}
