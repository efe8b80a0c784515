package libvirt_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/hypervisor/hvcontract"
	"github.com/jitsu-unikernel/jitsu/hypervisor/libvirt"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var run atomic.Int64

// newTestDriver opens the backend on libvirt's in-process test driver.
func newTestDriver(t *testing.T) *libvirt.Hypervisor {
	t.Helper()
	return newTestDriverOpts(t, false)
}

func newTestDriverOpts(t *testing.T, persistent bool) *libvirt.Hypervisor {
	t.Helper()
	hv, err := libvirt.New(context.Background(), libvirt.Options{
		Persistent:      persistent,
		URI:             "test:///default",
		Logger:          zaptest.NewLogger(t),
		ConsoleDir:      t.TempDir(),
		ShutdownTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatalf("New(test:///default): %v", err)
	}
	t.Cleanup(func() { _ = hv.Close() })
	return hv
}

func testSpec(name string) hypervisor.Spec {
	return hypervisor.Spec{
		Name: name, Kernel: "/nonexistent/bzImage", Initrd: "/nonexistent/initrd",
		Cmdline: "console=ttyS0", MemoryBytes: 64 << 20, DomainType: "test",
	}
}

// TestContractTestDriver runs the contract over test:///default, with
// transient and with persistent domains. The test driver's state lives as
// long as a connection to it is open, and it has a predefined foreign
// domain called "test".
func TestContractTestDriver(t *testing.T) {
	for _, persistent := range []bool{false, true} {
		t.Run(fmt.Sprintf("persistent=%v", persistent), func(t *testing.T) {
			hvcontract.Run(t, hvcontract.Harness{
				New:    func(t *testing.T) hypervisor.Hypervisor { return newTestDriverOpts(t, persistent) },
				Spec:   func(t *testing.T, name string) hypervisor.Spec { return testSpec(name) },
				Prefix: fmt.Sprintf("r%d-", run.Add(1)),
				Foreign: func(t *testing.T, hv hypervisor.Hypervisor) string {
					return "test" // predefined by test:///default, without jitsu metadata
				},
				Skip: map[string]string{
					"Crash":           "test:///default cannot crash a domain: no QEMU to kill, no guest to panic",
					"PrepareSnapshot": "test:///default cannot restore paused: its virDomainRestoreFlags refuses VIR_DOMAIN_SAVE_PAUSED (unsupported flags 0x4)",
				},
				Timeout: 10 * time.Second,
			})
		})
	}
}

func TestNewBadURI(t *testing.T) {
	_, err := libvirt.New(context.Background(), libvirt.Options{URI: "test:///nonexistent/file.xml", ShutdownTimeout: time.Second})
	if err == nil {
		t.Fatal("New with a bad URI succeeded")
	}
	if !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Errorf("New: %v, want ErrUnavailable", err)
	}
}

// TestNewRetrySharesMetrics: a backend created after a failed attempt on
// the same registry (jitsu retrying while libvirtd is down) works.
func TestNewRetrySharesMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := libvirt.New(context.Background(), libvirt.Options{URI: "test:///nonexistent/file.xml", ShutdownTimeout: time.Second, Registerer: reg}); err == nil {
		t.Fatal("New with a bad URI succeeded")
	}
	h, err := libvirt.New(context.Background(), libvirt.Options{URI: "test:///default", ShutdownTimeout: time.Second, Registerer: reg})
	if err != nil {
		t.Fatalf("New after a failed attempt on the same registry: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestStartInvalidSpec(t *testing.T) {
	hv := newTestDriver(t)
	tests := []struct {
		name string
		spec hypervisor.Spec
	}{
		{"no kernel", hypervisor.Spec{Name: "bad1", DomainType: "test"}},
		{"initrd without kernel", hypervisor.Spec{Name: "bad2", Initrd: "/x", Disks: []string{"/d.img"}, DomainType: "test"}},
		{"short MAC", hypervisor.Spec{Name: "bad3", Kernel: "/k", MAC: []byte{1, 2}, DomainType: "test"}},
		{"slash in name", hypervisor.Spec{Name: "a/b", Kernel: "/k", DomainType: "test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := hv.Start(context.Background(), tt.spec); err == nil {
				t.Fatalf("Start(%+v) succeeded", tt.spec)
			}
			if _, err := hv.State(context.Background(), tt.spec.Name); !errors.Is(err, hypervisor.ErrNotFound) {
				t.Errorf("State after failed Start: %v, want ErrNotFound", err)
			}
		})
	}
}

// TestAdoptAfterRestart checks that a second backend (a restarted jitsu)
// lists and stops the domains the first one created, and gets their events.
func TestAdoptAfterRestart(t *testing.T) {
	ctx := context.Background()
	first := newTestDriver(t) // keeps the test driver's state alive
	name := fmt.Sprintf("adopt-%d", run.Add(1))
	if err := first.Start(ctx, testSpec(name)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	second := newTestDriver(t)
	doms, err := second.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	found := false
	for _, d := range doms {
		found = found || (d.Name == name && d.State == hypervisor.StateRunning)
		if d.Name == "test" {
			t.Errorf("List contains the foreign domain %q", d.Name)
		}
	}
	if !found {
		t.Fatalf("second backend does not list running %q: %+v", name, doms)
	}
	if err := second.Stop(ctx, name, hypervisor.StopDestroy); err != nil {
		t.Fatalf("Stop from second backend: %v", err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-second.Events():
			if ev.Name == name && ev.Kind == hypervisor.EventStopped {
				return
			}
		case <-timeout:
			t.Fatal("no stopped event on the second backend")
		}
	}
}

// TestOptionsRequired: the backend takes explicit values (config owns the
// defaults): no URI or no shutdown timeout is an error.
func TestOptionsRequired(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts libvirt.Options
		want string
	}{
		{"no URI", libvirt.Options{ShutdownTimeout: time.Second}, "no connection URI"},
		{"no shutdown timeout", libvirt.Options{URI: "test:///default"}, "shutdown timeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := libvirt.Open(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestOpenUnreachable: Open returns at once with libvirt unreachable;
// calls fail with ErrUnavailable, Connected stays open, and Close stops
// the background connection attempts.
func TestOpenUnreachable(t *testing.T) {
	h, err := libvirt.Open(libvirt.Options{URI: "test:///nonexistent/file.xml", ShutdownTimeout: time.Second,
		ReconnectMin: time.Millisecond, ReconnectMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer h.Close()
	ctx := context.Background()
	if _, err := h.List(ctx); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Errorf("List while unreachable: %v, want ErrUnavailable", err)
	}
	if err := h.Start(ctx, testSpec("x")); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Errorf("Start while unreachable: %v, want ErrUnavailable", err)
	}
	select {
	case <-h.Connected():
		t.Error("Connected closed although libvirt is unreachable")
	default:
	}
}

// TestOpenConnects: Open connects in the background, closes Connected and
// reports EventReconnected.
func TestOpenConnects(t *testing.T) {
	h, err := libvirt.Open(libvirt.Options{URI: "test:///default", ShutdownTimeout: time.Second, ConsoleDir: t.TempDir()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer h.Close()
	select {
	case <-h.Connected():
	case <-time.After(30 * time.Second):
		t.Fatal("not connected to test:///default after 30 s")
	}
	select {
	case ev := <-h.Events():
		if ev.Kind != hypervisor.EventReconnected || ev.Name != "" {
			t.Errorf("first event %+v, want %v with no domain", ev, hypervisor.EventReconnected)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no reconnected event 30 s after connecting")
	}
	if _, err := h.List(context.Background()); err != nil {
		t.Errorf("List once connected: %v", err)
	}
}

// TestInstancesKeepApart: a backend never lists, starts over, stops or
// reports the domains of another jitsu instance.
func TestInstancesKeepApart(t *testing.T) {
	ctx := context.Background()
	open := func(instance string) *libvirt.Hypervisor {
		hv, err := libvirt.New(ctx, libvirt.Options{URI: "test:///default", Logger: zaptest.NewLogger(t),
			ConsoleDir: t.TempDir(), ShutdownTimeout: 2 * time.Second, Instance: instance})
		if err != nil {
			t.Fatalf("New(%s): %v", instance, err)
		}
		t.Cleanup(func() { _ = hv.Close() })
		return hv
	}
	blue, green := open("blue"), open("green")
	name := fmt.Sprintf("inst-%d", run.Add(1))
	if err := blue.Start(ctx, testSpec(name)); err != nil {
		t.Fatalf("blue Start: %v", err)
	}
	defer blue.Stop(ctx, name, hypervisor.StopDestroy)
	doms, err := green.List(ctx)
	if err != nil {
		t.Fatalf("green List: %v", err)
	}
	for _, d := range doms {
		if d.Name == name {
			t.Errorf("green lists blue's domain %q", name)
		}
	}
	for _, tt := range []struct {
		op  string
		err error
	}{
		{"Stop", green.Stop(ctx, name, hypervisor.StopDestroy)},
		{"Start", green.Start(ctx, testSpec(name))},
		{"Resume", green.Resume(ctx, name)},
	} {
		if !errors.Is(tt.err, hypervisor.ErrForeign) {
			t.Errorf("green %s on blue's domain: %v, want ErrForeign", tt.op, tt.err)
		}
	}
	if _, err := green.State(ctx, name); !errors.Is(err, hypervisor.ErrForeign) {
		t.Errorf("green State of blue's domain: %v, want ErrForeign", err)
	}
	if st, err := blue.State(ctx, name); err != nil || st != hypervisor.StateRunning {
		t.Errorf("blue's domain after green's attempts: %v %v, want running", st, err)
	}
	if err := blue.Stop(ctx, name, hypervisor.StopDestroy); err != nil {
		t.Fatalf("blue Stop: %v", err)
	}
	// green saw none of it.
	for {
		select {
		case ev := <-green.Events():
			if ev.Name == name {
				t.Errorf("green got an event of blue's domain: %+v", ev)
			}
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
}

// TestConsoleLogMode: a started domain's console log is 0640 whatever the
// umask and whatever mode an older log had (a console may print secrets).
func TestConsoleLogMode(t *testing.T) {
	ctx := context.Background()
	hv := newTestDriver(t)
	for _, tc := range []struct {
		name string
		old  os.FileMode // mode of an older log; 0: none
	}{
		{"new log", 0},
		{"older world-readable log", 0o666},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("console-%d", run.Add(1))
			path := hv.ConsolePath(name)
			if tc.old != 0 {
				if err := os.WriteFile(path, []byte("old"), tc.old); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.old); err != nil {
					t.Fatal(err)
				}
			}
			if err := hv.Start(ctx, testSpec(name)); err != nil {
				t.Fatalf("Start: %v", err)
			}
			t.Cleanup(func() { _ = hv.Stop(ctx, name, hypervisor.StopDestroy) })
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != libvirt.ConsoleMode {
				t.Fatalf("console log mode %v, want %v", fi.Mode().Perm(), os.FileMode(libvirt.ConsoleMode))
			}
		})
	}
}

// TestAllInterfaceStats: the bulk read lists every running domain and no
// stopped one. (The test driver's bulk stats carry no NIC counters, and
// its per-domain ones change at every read: the counters are libvirt's
// own, those of `virsh domstats --interface`.)
func TestAllInterfaceStats(t *testing.T) {
	ctx := context.Background()
	hv := newTestDriver(t)
	var names []string
	for range 3 {
		name := fmt.Sprintf("stats-%d", run.Add(1))
		spec := testSpec(name)
		spec.Bridge = "br-test"
		if err := hv.Start(ctx, spec); err != nil {
			t.Fatalf("Start: %v", err)
		}
		names = append(names, name)
	}
	all, err := hv.AllInterfaceStats(ctx)
	if err != nil {
		t.Fatalf("AllInterfaceStats: %v", err)
	}
	for _, name := range names {
		if _, ok := all[name]; !ok {
			t.Errorf("%s missing from %v", name, all)
		}
	}
	if err := hv.Stop(ctx, names[0], hypervisor.StopDestroy); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if all, err = hv.AllInterfaceStats(ctx); err != nil {
		t.Fatalf("AllInterfaceStats: %v", err)
	}
	if _, ok := all[names[0]]; ok {
		t.Errorf("stopped %s still listed", names[0])
	}
}

// TestListRereadsMetadataOfANewRun: List reads a running domain's
// metadata once per run (cached by its UUID and id): a domain started
// again under the same name with another MAC is listed with the new one,
// and the foreign domain stays out at every listing.
func TestListRereadsMetadataOfANewRun(t *testing.T) {
	ctx := context.Background()
	hv := newTestDriver(t)
	name := fmt.Sprintf("relist-%d", run.Add(1))
	macOf := func() net.HardwareAddr {
		t.Helper()
		doms, err := hv.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		var mac net.HardwareAddr
		for _, d := range doms {
			if d.Name == "test" {
				t.Errorf("List contains the foreign domain %q", d.Name)
			}
			if d.Name == name {
				mac = d.MAC
			}
		}
		return mac
	}
	for i, mac := range []string{"52:54:00:00:00:01", "52:54:00:00:00:02"} {
		spec := testSpec(name)
		spec.MAC, _ = net.ParseMAC(mac)
		if err := hv.Start(ctx, spec); err != nil {
			t.Fatalf("Start %d: %v", i, err)
		}
		for range 2 { // the second listing comes from the cache
			if got := macOf(); got.String() != mac {
				t.Errorf("run %d: listed with MAC %v, want %s", i, got, mac)
			}
		}
		if err := hv.Stop(ctx, name, hypervisor.StopDestroy); err != nil {
			t.Fatalf("Stop %d: %v", i, err)
		}
	}
}
