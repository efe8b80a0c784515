package summoner_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/hypervisor/libvirt"
	"github.com/jitsu-unikernel/jitsu/summoner"
)

// openTestDriver opens hypervisor/libvirt on libvirt's in-process
// test:///default driver (no libvirtd, no QEMU). Its domains live as long
// as one connection to it is open.
func openTestDriver(t *testing.T) *libvirt.Hypervisor {
	t.Helper()
	hv, err := libvirt.New(context.Background(), libvirt.Options{
		URI: "test:///default", ConsoleDir: t.TempDir(), ShutdownTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatalf("libvirt test driver: %v", err)
	}
	t.Cleanup(func() { _ = hv.Close() })
	return hv
}

// lvUnikernel is a unikernel for the test driver, ready after delay:0.
func lvUnikernel(prefix, name string, i int, mode hypervisor.StopMode) summoner.Unikernel {
	dom := prefix + name
	return summoner.Unikernel{
		Name:  name,
		Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 9, 0, byte(i)})},
		Spec: hypervisor.Spec{Name: dom, Kernel: "/nonexistent/bzImage", Cmdline: "console=ttyS0",
			MemoryBytes: 64 << 20, DomainType: "test"},
		IdleTimeout: 200 * time.Millisecond,
		BootTimeout: 30 * time.Second,
		StopMode:    mode,
		Ready:       summoner.Ready{Kind: summoner.ReadyDelay},
		Triggers:    []summoner.Trigger{summoner.TriggerDNS, summoner.TriggerTCP},
	}
}

// runSummoner runs a summoner with the real clock until stop is called.
func runSummoner(t *testing.T, hv hypervisor.Hypervisor, uks []summoner.Unikernel) (s *summoner.Summoner, stop func()) {
	t.Helper()
	s, err := summoner.New(summoner.Options{Hypervisor: hv, Logger: zaptest.NewLogger(t), StatsInterval: 20 * time.Millisecond}, uks)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	select {
	case <-s.Running():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	return s, stop
}

func wait(t *testing.T, ctx context.Context, s *summoner.Summoner, name string, st summoner.State) {
	t.Helper()
	if err := s.WaitState(ctx, name, st); err != nil {
		t.Fatal(err)
	}
}

func domState(t *testing.T, ctx context.Context, hv hypervisor.Hypervisor, dom string) hypervisor.State {
	t.Helper()
	st, err := hv.State(ctx, dom)
	if err != nil {
		return hypervisor.StateUnknown
	}
	return st
}

// TestLibvirtIdleOutStopModes idles unikernels out with each stop mode over
// the libvirt backend and summons them back.
func TestLibvirtIdleOutStopModes(t *testing.T) {
	hv := openTestDriver(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := fmt.Sprintf("sm%d-idle-", os.Getpid())
	modes := []struct {
		name  string
		mode  hypervisor.StopMode
		state summoner.State
		dom   hypervisor.State
	}{
		{"destroy", hypervisor.StopDestroy, summoner.StateStopped, hypervisor.StateUnknown},
		{"suspend", hypervisor.StopSuspend, summoner.StateSuspended, hypervisor.StatePaused},
		{"save", hypervisor.StopSave, summoner.StateSaved, hypervisor.StateSaved},
	}
	var uks []summoner.Unikernel
	for i, m := range modes {
		uks = append(uks, lvUnikernel(prefix, m.name, i+1, m.mode))
	}
	s, _ := runSummoner(t, hv, uks)
	for _, m := range modes {
		if _, err := s.Summon(ctx, m.name); err != nil {
			t.Fatal(err)
		}
		wait(t, ctx, s, m.name, summoner.StateReady)
		if got := domState(t, ctx, hv, prefix+m.name); got != hypervisor.StateRunning {
			t.Fatalf("%s: domain %s after ready", m.name, got)
		}
	}
	for _, m := range modes {
		wait(t, ctx, s, m.name, m.state)
		got := domState(t, ctx, hv, prefix+m.name)
		if m.mode == hypervisor.StopDestroy {
			if got == hypervisor.StateRunning || got == hypervisor.StatePaused {
				t.Fatalf("%s: domain still %s", m.name, got)
			}
		} else if got != m.dom {
			t.Fatalf("%s: domain %s, want %s", m.name, got, m.dom)
		}
	}
	for _, m := range modes {
		if _, err := s.Summon(ctx, m.name); err != nil {
			t.Fatal(err)
		}
		wait(t, ctx, s, m.name, summoner.StateReady)
		if got := domState(t, ctx, hv, prefix+m.name); got != hypervisor.StateRunning {
			t.Fatalf("%s: domain %s after the summon back", m.name, got)
		}
	}
	for _, m := range modes {
		_ = hv.Stop(ctx, prefix+m.name, hypervisor.StopDestroy)
	}
}

// TestLibvirtAdoptionAfterRestart runs a summoner, leaves a running, a
// suspended and a saved domain behind, and starts a new summoner on a new
// connection whose config dropped one of them.
func TestLibvirtAdoptionAfterRestart(t *testing.T) {
	hv1 := openTestDriver(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := fmt.Sprintf("sm%d-adopt-", os.Getpid())
	uks := []summoner.Unikernel{
		lvUnikernel(prefix, "run", 1, hypervisor.StopDestroy),
		lvUnikernel(prefix, "paused", 2, hypervisor.StopSuspend),
		lvUnikernel(prefix, "saved", 3, hypervisor.StopSave),
		lvUnikernel(prefix, "gone", 4, hypervisor.StopDestroy),
	}
	for i := range uks {
		uks[i].IdleTimeout = 0
	}
	s1, stop1 := runSummoner(t, hv1, uks)
	for _, u := range uks {
		if _, err := s1.Summon(ctx, u.Name); err != nil {
			t.Fatal(err)
		}
		wait(t, ctx, s1, u.Name, summoner.StateReady)
	}
	if err := s1.Stop(ctx, "paused", ""); err != nil {
		t.Fatal(err)
	}
	if err := s1.Stop(ctx, "saved", ""); err != nil {
		t.Fatal(err)
	}
	stop1() // jitsu exits; the domains stay

	if got := domState(t, ctx, hv1, prefix+"run"); got != hypervisor.StateRunning {
		t.Fatalf("summoner exit stopped a domain: %s", got)
	}
	hv2 := openTestDriver(t)
	s2, _ := runSummoner(t, hv2, uks[:3]) // "gone" was removed from the config
	wait(t, ctx, s2, "run", summoner.StateReady)
	wait(t, ctx, s2, "paused", summoner.StateSuspended)
	wait(t, ctx, s2, "saved", summoner.StateSaved)
	if got := domState(t, ctx, hv2, prefix+"gone"); got == hypervisor.StateRunning {
		t.Fatal("domain of a unikernel no longer configured left running")
	}
	for _, st := range s2.Status() {
		if st.Boots != 0 {
			t.Fatalf("%s booted %d times by adoption", st.Name, st.Boots)
		}
	}
	for _, name := range []string{"paused", "saved"} {
		if _, err := s2.Summon(ctx, name); err != nil {
			t.Fatal(err)
		}
		wait(t, ctx, s2, name, summoner.StateReady)
		if got := domState(t, ctx, hv2, prefix+name); got != hypervisor.StateRunning {
			t.Fatalf("%s: domain %s after summon", name, got)
		}
	}
	for _, u := range uks {
		_ = hv2.Stop(ctx, prefix+u.Name, hypervisor.StopDestroy)
	}
}
