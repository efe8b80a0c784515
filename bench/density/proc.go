package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the times in /proc/stat and /proc/PID/stat
// (USER_HZ, 100 on every Linux architecture jitsu runs on).
const userHZ = 100

// hostTicks returns the busy and total ticks of every CPU from /proc/stat.
func hostTicks() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q", line)
	}
	// user nice system idle iowait irq softirq steal (guest is in user).
	var v [8]uint64
	for i := range v {
		if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
	}
	busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return busy, busy + v[3] + v[4], nil
}

// procTicks returns pid's utime+stime (all its threads), in ticks.
func procTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatTicks(string(b))
}

// parseStatTicks returns utime+stime of a /proc/PID/stat line.
func parseStatTicks(s string) (uint64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat %q: no command", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("stat %q: too few fields", s)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("stat %q: %w", s, err)
	}
	return u + st, nil
}

// rssKiB returns pid's VmRSS in KiB.
func rssKiB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("VmRSS line %q", l)
			}
			return strconv.Atoi(f[0])
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS (a zombie?)", pid)
}

// openFiles returns how many files pid has open.
func openFiles(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// qemuPid returns the pid of the QEMU process of domain dom (libvirt's
// pid file), 0 if there is none.
func qemuPid(dom string) int {
	b, err := os.ReadFile(filepath.Join("/run/libvirt/qemu", dom+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// cpuSnap is the CPU times at one instant.
type cpuSnap struct {
	at                time.Time
	hostBusy, hostAll uint64
	jitsu, libvirtd   uint64
	qemu              map[int]uint64 // by pid
}

// snapCPU reads the CPU times of the host, jitsu, libvirtd and the QEMU
// processes qemus.
func snapCPU(jitsu, libvirtd int, qemus []int) (cpuSnap, error) {
	s := cpuSnap{at: time.Now(), qemu: map[int]uint64{}}
	var err error
	if s.hostBusy, s.hostAll, err = hostTicks(); err != nil {
		return s, err
	}
	if s.jitsu, err = procTicks(jitsu); err != nil {
		return s, fmt.Errorf("jitsu: %w", err)
	}
	if s.libvirtd, err = procTicks(libvirtd); err != nil {
		return s, fmt.Errorf("libvirtd: %w", err)
	}
	for _, p := range qemus {
		if s.qemu[p], err = procTicks(p); err != nil {
			return s, fmt.Errorf("QEMU pid %d: %w", p, err)
		}
	}
	return s, nil
}

// cpuUse is CPU use over a window, in percent of one core.
type cpuUse struct {
	host, jitsu, libvirtd, qemu float64 // qemu: all QEMU processes
}

// use returns the CPU used between a and b (a QEMU process must be in
// both).
func use(a, b cpuSnap) cpuUse {
	secs := b.at.Sub(a.at).Seconds()
	pct := func(ticks uint64) float64 { return float64(ticks) / userHZ / secs * 100 }
	u := cpuUse{host: pct(b.hostBusy - a.hostBusy), jitsu: pct(b.jitsu - a.jitsu), libvirtd: pct(b.libvirtd - a.libvirtd)}
	var q uint64
	for p, t := range b.qemu {
		if t0, ok := a.qemu[p]; ok {
			q += t - t0
		}
	}
	u.qemu = pct(q)
	return u
}
