// Package roottest checks guestcpu against the host's real cgroup cpu
// controller (root): a process in the root cgroup is moved into the guests'
// group with the lowered weight, and a process libvirt placed in a
// partition of its own gets that partition's weight lowered.
package roottest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/guestcpu"
	"github.com/jitsu-unikernel/jitsu/internal/testenv"
)

// weightFile is the cgroup file of a CPU weight and the value a weight of
// 10 (on the v2 scale) gives there.
func weightFile(mode string) (file, want string) {
	if mode == guestcpu.ModeCgroupV2 {
		return "cpu.weight", "10"
	}
	return "cpu.shares", "102" // 10 · 1024 / 100
}

// sleeper starts a process to place; it is killed and reaped when the test
// ends.
func sleeper(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

// cgroupOf is pid's cgroup in the cpu hierarchy (/proc/PID/cgroup).
func cgroupOf(t *testing.T, pid int, v2 bool) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		if v2 && f[0] == "0" || !v2 && strings.Contains(","+f[1]+",", ",cpu,") {
			return f[2]
		}
	}
	t.Fatalf("no cpu cgroup line in %q", b)
	return ""
}

// rmdirAfter removes the cgroup dir when the test ends (its processes are
// gone by then: cleanups run last registered first).
func rmdirAfter(t *testing.T, dir string) {
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
			t.Errorf("remove cgroup %s: %v", dir, err)
		}
	})
}

// requireController needs root and the host's cgroup cpu controller,
// and returns guestcpu's mode and the controller's mount point; without
// it the test is skipped (failed in CI).
func requireController(t *testing.T) (mode, mount string) {
	t.Helper()
	testenv.RequireRoot(t)
	mode, mount = guestcpu.Detect("")
	if mode == guestcpu.ModeNone {
		if testenv.InCI() {
			t.Fatal("no cgroup cpu controller on this host")
		}
		t.Skip("no cgroup cpu controller on this host: nothing to place or remove")
	}
	return mode, mount
}

// TestPlace: both ways guestcpu lowers a guest's CPU weight, on the
// host's real cgroup cpu controller, with a sleep process for a QEMU.
func TestPlace(t *testing.T) {
	mode, mount := requireController(t)
	v2 := mode == guestcpu.ModeCgroupV2
	file, want := weightFile(mode)
	group := fmt.Sprintf("jitsu-guests-test-%d", os.Getpid())
	w, err := guestcpu.New(guestcpu.Options{Weight: 10, Group: group})
	if err != nil {
		t.Fatal(err)
	}
	rmdirAfter(t, filepath.Join(mount, group))

	t.Run("root cgroup: moved into the guests' group", func(t *testing.T) {
		pid := sleeper(t) // in the test's own cgroup, as a QEMU libvirt left in jitsu's
		if err := w.Place(pid); err != nil {
			t.Fatal(err)
		}
		if cg := cgroupOf(t, pid, v2); cg != "/"+group {
			t.Fatalf("placed process is in %q, want /%s", cg, group)
		}
		b, err := os.ReadFile(filepath.Join(mount, group, file))
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Fatalf("%s of the guests' group = %q (%v), want %s", file, b, err, want)
		}
		// It is moved back out before its group is removed.
		t.Cleanup(func() { _ = w.Move(pid, mount) })
	})

	t.Run("libvirt's partition: its weight lowered", func(t *testing.T) {
		part := filepath.Join(mount, fmt.Sprintf("jitsu-machine-test-%d", os.Getpid()))
		scope := filepath.Join(part, "qemu-1-web.libvirt-qemu")
		if err := os.MkdirAll(scope, 0o755); err != nil {
			t.Fatal(err)
		}
		rmdirAfter(t, part)
		rmdirAfter(t, scope)
		if v2 {
			_ = os.WriteFile(filepath.Join(part, "cgroup.subtree_control"), []byte("+cpu"), 0)
		}
		pid := sleeper(t)
		if err := w.Move(pid, scope); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Move(pid, mount) })
		if err := w.Place(pid); err != nil {
			t.Fatal(err)
		}
		if cg := cgroupOf(t, pid, v2); !strings.HasSuffix(cg, "/qemu-1-web.libvirt-qemu") {
			t.Fatalf("a process in libvirt's partition was moved to %q", cg)
		}
		b, err := os.ReadFile(filepath.Join(part, file))
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Fatalf("%s of the partition = %q (%v), want %s", file, b, err, want)
		}
	})
}

// TestGroupRemoved: when Run ends, the guests' group is removed if no
// process is left in it, and kept while one is.
func TestGroupRemoved(t *testing.T) {
	_, mount := requireController(t)
	for _, busy := range []bool{true, false} {
		t.Run(fmt.Sprintf("busy=%v", busy), func(t *testing.T) {
			group := fmt.Sprintf("jitsu-guests-rm-%d-%v", os.Getpid(), busy)
			dir := filepath.Join(mount, group)
			w, err := guestcpu.New(guestcpu.Options{Weight: 10, Group: group})
			if err != nil {
				t.Fatal(err)
			}
			rmdirAfter(t, dir)
			if busy {
				pid := sleeper(t)
				if err := w.Place(pid); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = w.Move(pid, mount) })
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := w.Run(ctx, time.Hour); err != nil {
				t.Fatal(err)
			}
			_, err = os.Stat(dir)
			if busy && err != nil {
				t.Errorf("group with a guest in it: %v, want kept", err)
			}
			if !busy && !os.IsNotExist(err) {
				t.Errorf("empty group still there after Run (%v), want removed", err)
			}
		})
	}
}
