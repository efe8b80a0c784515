package sandbox

import (
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// reaper makes this process the child subreaper of the daemons it starts
// and reaps their QEMU processes as soon as they exit.
//
// libvirtd daemonises QEMU, so a QEMU that exits becomes a zombie of the
// nearest subreaper, normally PID 1. libvirt waits for that zombie to be
// reaped before it reports a domain stopped (virProcessKillPainfully polls
// kill(pid, 0)); where PID 1 reaps lazily (containers, sandboxes), every
// destroy and every crash event is late by a second or more. As subreaper,
// this process reaps them at once, so tests see libvirt's own latency.
type reaper struct {
	sig  chan os.Signal
	stop chan struct{}
	done chan struct{}
}

func startReaper() (*reaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, err
	}
	r := &reaper{sig: make(chan os.Signal, 16), stop: make(chan struct{}), done: make(chan struct{})}
	signal.Notify(r.sig, syscall.SIGCHLD)
	go r.run()
	return r, nil
}

func (r *reaper) run() {
	defer close(r.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			reapZombies(isQEMU)
			return
		case <-r.sig:
		case <-tick.C:
		}
		reapZombies(isQEMU)
	}
}

// Close stops reaping. Processes reparented later go to PID 1 again only
// once this process exits; by then Close of the Env has stopped them.
func (r *reaper) Close() error {
	signal.Stop(r.sig)
	close(r.stop)
	<-r.done
	return nil
}

func isQEMU(comm string) bool { return strings.HasPrefix(comm, "qemu-system") }

// reapZombies reaps this process's zombie children whose command name
// matches. Only daemonised orphans match, never children started with
// os/exec, whose Wait must see their status.
func reapZombies(match func(comm string) bool) {
	me := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if zombieChildOf(pid, me) && match(comm(pid)) {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
	}
}

// zombieChildOf reports whether pid is a zombie whose parent is ppid.
func zombieChildOf(pid, ppid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return false
	}
	var state string
	parent := -1
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "State:"); ok {
			state = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			parent, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return parent == ppid && strings.HasPrefix(state, "Z")
}
