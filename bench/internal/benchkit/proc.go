package benchkit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// UserHZ is the unit of the times in /proc/stat and /proc/PID/stat
// (USER_HZ, 100 on every Linux architecture jitsu runs on).
const UserHZ = 100

// Ticks converts clock ticks (USER_HZ) to a duration.
func Ticks(t uint64) time.Duration { return time.Duration(t) * time.Second / UserHZ }

// HostTicks returns the busy and total ticks of every CPU from /proc/stat.
func HostTicks() (busy, total uint64, err error) {
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

// ProcTicks returns pid's utime+stime (all its threads), in ticks.
func ProcTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseStatTicks(string(b))
}

// ParseStatTicks returns utime+stime of a /proc/PID/stat line.
func ParseStatTicks(s string) (uint64, error) {
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

// RSSKiB returns pid's VmRSS in KiB.
func RSSKiB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	kib, err := ParseVmRSS(string(b))
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return kib, nil
}

// ParseVmRSS returns the VmRSS line of a /proc/PID/status, in KiB.
func ParseVmRSS(status string) (int, error) {
	for _, l := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("VmRSS line %q", l)
			}
			return strconv.Atoi(f[0])
		}
	}
	return 0, errors.New("no VmRSS line (a kernel thread or a zombie)")
}

// OpenFiles returns how many files pid has open.
func OpenFiles(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// StartLogged starts cmd (called name in errors) with its standard error appended to log (closed
// when it stops) and returns a function that stops it: SIGTERM, then
// SIGKILL if it has not exited within grace. The error of stop says
// whether it exited cleanly, and names the log.
func StartLogged(name string, cmd *exec.Cmd, log *os.File, grace time.Duration) (stop func() error, err error) {
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return func() error {
		defer log.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("%s exit after SIGTERM: %w (log %s)", name, err, log.Name())
			}
			return nil
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("%s did not stop within %v of SIGTERM (log %s)", name, grace, log.Name())
		}
	}, nil
}
