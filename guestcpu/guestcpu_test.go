package guestcpu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHost writes a proc directory (mountinfo, jitsu's cgroup, one QEMU
// of domain "web" with pid 123) and a cgroup hierarchy under a temp dir.
func fakeHost(t *testing.T, fstype, self, qemu string) (proc, mount string) {
	t.Helper()
	dir := t.TempDir()
	proc, mount = filepath.Join(dir, "proc"), filepath.Join(dir, "cg")
	mi := ""
	switch fstype {
	case "cgroup":
		mi = "35 25 0:30 / " + mount + " rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
	case "cgroup2":
		mi = "36 25 0:31 / " + mount + " rw - cgroup2 cgroup2 rw\n"
	}
	mi = "24 1 0:22 / /sys rw - sysfs sysfs rw\n" + mi
	line := func(cg string) string {
		if fstype == "cgroup2" {
			return "0::" + cg + "\n"
		}
		return "2:cpuacct:/\n1:cpu,cpuacct:" + cg + "\n0::/\n"
	}
	write(t, filepath.Join(proc, "self/mountinfo"), mi)
	write(t, filepath.Join(proc, "self/cgroup"), line(self))
	write(t, filepath.Join(proc, "123/cmdline"), "/usr/bin/qemu-system-x86_64\x00-name\x00guest=web,debug-threads=on\x00-S\x00")
	write(t, filepath.Join(proc, "123/cgroup"), line(qemu))
	write(t, filepath.Join(proc, "77/cmdline"), "/usr/sbin/jitsu\x00serve\x00")
	write(t, filepath.Join(mount, "cgroup.controllers"), "cpu memory\n")
	write(t, filepath.Join(mount, "cgroup.subtree_control"), "")
	return proc, mount
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestPlace(t *testing.T) {
	for _, tc := range []struct {
		name, fstype, self, qemu string
		mode                     string
		file, want               string // relative to the hierarchy
		moved                    bool
	}{
		{"v1, QEMU in the root cgroup", "cgroup", "/", "/", ModeCgroupV1, "jitsu-guests/cpu.shares", "102", true},
		{"v1, QEMU in jitsu's cgroup", "cgroup", "/svc", "/svc", ModeCgroupV1, "jitsu-guests/cpu.shares", "102", true},
		{"v1, libvirt's partition", "cgroup", "/", "/machine/qemu-1-web.libvirt-qemu/emulator", ModeCgroupV1, "machine/cpu.shares", "102", false},
		{"v2, QEMU in the root cgroup", "cgroup2", "/", "/", ModeCgroupV2, "jitsu-guests/cpu.weight", "10", true},
		{"v2, machine.slice", "cgroup2", "/system.slice/jitsu.service", "/machine.slice/machine-qemu.scope/libvirt/emulator", ModeCgroupV2, "machine.slice/cpu.weight", "10", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc, mount := fakeHost(t, tc.fstype, tc.self, tc.qemu)
			w, err := New(Options{Weight: 10, Proc: proc})
			if err != nil {
				t.Fatal(err)
			}
			if w.Mode() != tc.mode {
				t.Fatalf("mode %q, want %q", w.Mode(), tc.mode)
			}
			pids := QEMUPids(proc, map[string]bool{"web": true, "other": true})
			if len(pids) != 1 || pids["web"] != 123 {
				t.Fatalf("QEMU pids %v, want web: 123", pids)
			}
			if !tc.moved {
				write(t, filepath.Join(mount, tc.file), "1024")
			}
			if err := w.Place(123); err != nil {
				t.Fatal(err)
			}
			if got := read(t, filepath.Join(mount, tc.file)); got != tc.want {
				t.Fatalf("%s = %q, want %q", tc.file, got, tc.want)
			}
			procs, _ := os.ReadFile(filepath.Join(mount, "jitsu-guests/cgroup.procs"))
			if moved := string(procs) == "123"; moved != tc.moved {
				t.Fatalf("jitsu-guests/cgroup.procs %q: moved %v, want %v", procs, moved, tc.moved)
			}
		})
	}
}

func TestNoController(t *testing.T) {
	proc, _ := fakeHost(t, "none", "/", "/")
	w, err := New(Options{Weight: 10, Proc: proc})
	if err != nil {
		t.Fatal(err)
	}
	if w.Mode() != ModeNone || w.Dir() != "" {
		t.Fatalf("mode %q, dir %q: want none", w.Mode(), w.Dir())
	}
	if err := w.Place(123); err != nil {
		t.Fatalf("Place without a controller: %v, want nothing done", err)
	}
	if w, _ := New(Options{Proc: proc}); w.Mode() != ModeOff {
		t.Fatalf("weight 0: mode %q, want off", w.Mode())
	}
}

func TestPartition(t *testing.T) {
	for _, tc := range []struct{ cg, self, want string }{
		{"/machine/qemu-1-web.libvirt-qemu", "/", "/machine"},
		{"/machine.slice/x.scope/libvirt", "/system.slice/jitsu.service", "/machine.slice"},
		{"/docker/abc/machine/qemu-1", "/docker/abc", "/docker/abc/machine"},
	} {
		if got := partition(tc.cg, tc.self); got != tc.want {
			t.Errorf("partition(%q, %q) = %q, want %q", tc.cg, tc.self, got, tc.want)
		}
	}
}
