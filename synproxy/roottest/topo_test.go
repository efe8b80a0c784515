package roottest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/internal/nettest"
	"github.com/jitsu-unikernel/jitsu/synproxy"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
)

const (
	bridge   = "br0"
	guestMAC = "02:00:4a:53:00:02"
	port     = 8080
)

var (
	guest4  = netip.MustParseAddr("10.77.0.2")
	guest6  = netip.MustParseAddr("fd77::2")
	client4 = netip.MustParseAddr("10.78.0.2")
)

// topo is a host namespace with a bridge, a client namespace routed
// through it, and a guest stand-in namespace whose veth is on the bridge.
type topo struct {
	host, client, guest *nettest.NS
	mac                 net.HardwareAddr
}

// path is one way to a guest address: from the routed client or from the
// host itself, over IPv4 or IPv6.
type path struct {
	name string
	from *nettest.NS
	addr netip.Addr
}

// paths returns the four ways to the guest.
func (tp *topo) paths() []path {
	return []path{
		{"routed ipv4", tp.client, guest4},
		{"routed ipv6", tp.client, guest6},
		{"host-local ipv4", tp.host, guest4},
		{"host-local ipv6", tp.host, guest6},
	}
}

func newTopo(t *testing.T) *topo {
	t.Helper()
	nettestRequire(t)
	return newTopoB(t)
}

// nettestRequire checks the root tier's needs.
func nettestRequire(t testing.TB) {
	t.Helper()
	nettest.Require(t, "nft", "sysctl", "bridge")
}

// newTopoB builds the topology (for tests and benchmarks).
func newTopoB(t testing.TB) *topo {
	t.Helper()
	tp := &topo{
		host:   nettest.NewNS(t, "h"),
		client: nettest.NewNS(t, "c"),
		guest:  nettest.NewNS(t, "g"),
	}
	h, c, g := tp.host, tp.client, tp.guest
	h.Sysctl("net.ipv4.ip_forward", "1")
	h.Sysctl("net.ipv6.conf.all.forwarding", "1")
	h.Bridge(bridge)
	h.Addr(bridge, "10.77.0.1/24")
	h.Addr(bridge, "fd77::1/64")

	nettest.Veth(t, g, "eth0", guestMAC, h, "vg0")
	h.IP("link", "set", "vg0", "master", bridge)
	g.Addr("eth0", "10.77.0.2/24")
	g.Addr("eth0", "fd77::2/64")
	g.IP("route", "add", "default", "via", "10.77.0.1")
	g.IP("-6", "route", "add", "default", "via", "fd77::1")

	nettest.Veth(t, c, "eth0", "", h, "vc0")
	h.Addr("vc0", "10.78.0.1/24")
	h.Addr("vc0", "fd78::1/64")
	c.Addr("eth0", "10.78.0.2/24")
	c.Addr("eth0", "fd78::2/64")
	c.IP("route", "add", "default", "via", "10.78.0.1")
	c.IP("-6", "route", "add", "default", "via", "fd78::1")
	tp.mac = g.MAC("eth0")
	return tp
}

// startProxy runs a proxy in the host namespace until the test ends.
func (tp *topo) startProxy(t testing.TB, limits synproxy.Limits, reg prometheus.Registerer) *runningProxy {
	t.Helper()
	return tp.startProxyOpts(t, synproxy.Options{Registerer: reg, Limits: limits})
}

// startProxyOpts runs a proxy with opts (bridge, namespace, logger and
// unset limits filled in) in the host namespace until the test ends.
func (tp *topo) startProxyOpts(t testing.TB, opts synproxy.Options) *runningProxy {
	t.Helper()
	opts.Bridge, opts.NetNS, opts.Logger = bridge, tp.host.Path(), zaptest.NewLogger(t)
	opts.Limits = testLimits(opts.Limits)
	p, err := synproxy.New(opts)
	if err != nil {
		t.Fatalf("new proxy: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- p.Run(ctx) }()
	// Run installs the table before it handles packets; wait for it.
	go func() {
		defer close(ready)
		for ctx.Err() == nil {
			if out, _ := tp.host.Exec("nft", "list", "table", "inet", synproxy.TableName); out != "" && !containsErr(out) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("proxy run: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("proxy run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &runningProxy{Proxy: p, stop: stop}
}

// runningProxy is a proxy running in the host namespace; stop ends Run and
// waits for it (also done in t.Cleanup).
type runningProxy struct {
	*synproxy.Proxy
	stop func()
}

func containsErr(s string) bool {
	return len(s) >= 5 && (s[:5] == "Error" || s[:5] == "error")
}

// dial connects from ns to addr:port with timeout and returns the
// connection and the time the connect completed.
func dial(ns *nettest.NS, addr netip.Addr, timeout time.Duration) (net.Conn, time.Time, error) {
	var (
		conn net.Conn
		at   time.Time
	)
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: timeout}
		var err error
		conn, err = d.Dial("tcp", netip.AddrPortFrom(addr, port).String())
		at = time.Now()
		return err
	})
	return conn, at, err
}

// listen starts a TCP server in ns on port that accepts connections,
// closes them and sends one value on accepted for each, and returns the
// listener and the time it started listening.
func listen(t testing.TB, ns *nettest.NS, accepted chan<- struct{}) (net.Listener, time.Time) {
	t.Helper()
	var (
		ln net.Listener
		at time.Time
	)
	err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		at = time.Now()
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", ns.Name, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			if accepted != nil {
				accepted <- struct{}{}
			}
		}
	}()
	return ln, at
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// outRsts returns the TCP OutRsts counter of the namespace: how many RSTs
// its stack has sent.
func outRsts(t testing.TB, ns *nettest.NS) int {
	t.Helper()
	out, err := ns.Exec("cat", "/proc/net/snmp")
	if err != nil {
		t.Fatalf("read snmp in %s: %v: %s", ns.Name, err, out)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "OutRsts" && i < len(f) {
				v, err := strconv.Atoi(f[i])
				if err != nil {
					t.Fatalf("OutRsts %q: %v", f[i], err)
				}
				return v
			}
		}
	}
	t.Fatalf("no Tcp OutRsts in /proc/net/snmp of %s", ns.Name)
	return 0
}

// neighState returns the `ip neigh` line of addr on the bridge of the host
// namespace ("" if none).
func (tp *topo) neighState(t testing.TB, addr netip.Addr) string {
	t.Helper()
	return strings.TrimSpace(tp.host.IP("neigh", "show", addr.String(), "dev", bridge))
}

// stats summarises durations: median, p99 and max.
func stats(ds []time.Duration) (median, p99, maxD time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)], s[len(s)-1]
}

// testLimits fills the zero fields of l with the tests' bounds.
func testLimits(l synproxy.Limits) synproxy.Limits {
	if l.PerAddress <= 0 {
		l.PerAddress = 256
	}
	if l.Total <= 0 {
		l.Total = 4096
	}
	if l.Bytes <= 0 {
		l.Bytes = 1 << 20
	}
	if l.MaxAge <= 0 {
		l.MaxAge = 30 * time.Second
	}
	return l
}

// Protocols to hold.
var (
	tcpOnly = []uint8{6}
	tcpUDP  = []uint8{6, 17}
)
