package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// state is what a sandbox created, written to StateDir/NS.json before it
// creates each thing, so that a sandbox whose process died can be removed.
type state struct {
	Owner      int      `json:"owner"`
	Namespaces []string `json:"namespaces"`
	EtcDirs    []string `json:"etc_dirs,omitempty"`
	Daemons    []daemon `json:"daemons,omitempty"`
	path       string
}

// daemon is a process the sandbox started, checked by name before it is
// stopped (pids are reused).
type daemon struct {
	Pid  int    `json:"pid"`
	Name string `json:"name"`
}

// saveState writes the state file; the first call also arranges for its
// removal at Close, after everything else.
func (e *Env) saveState() error {
	if e.state.path == "" {
		if err := os.MkdirAll(StateDir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", StateDir, err)
		}
		e.state.path = filepath.Join(StateDir, e.NS+".json")
		e.state.Owner = os.Getpid()
		path := e.state.path
		e.stack.Push(func() error {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove sandbox state: %w", err)
			}
			return nil
		})
	}
	b, err := json.MarshalIndent(e.state, "", "  ")
	if err != nil {
		return fmt.Errorf("encode sandbox state: %w", err)
	}
	tmp := e.state.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write sandbox state: %w", err)
	}
	if err := os.Rename(tmp, e.state.path); err != nil {
		return fmt.Errorf("write sandbox state: %w", err)
	}
	return nil
}

// cleanStale removes every sandbox recorded in StateDir. Only call it
// holding the lock: then no recorded sandbox is alive.
func cleanStale(logf func(string, ...any)) error {
	files, _ := filepath.Glob(filepath.Join(StateDir, "*.json"))
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("read stale sandbox state: %w", err))
			continue
		}
		var st state
		if err := json.Unmarshal(b, &st); err != nil {
			logf("removing unreadable sandbox state %s: %v", f, err)
			_ = os.Remove(f)
			continue
		}
		logf("removing what a dead sandbox (pid %d) left: %v", st.Owner, st.Namespaces)
		if err := removeState(st, logf); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(f); err != nil {
			errs = append(errs, fmt.Errorf("remove stale sandbox state: %w", err))
		}
	}
	return errors.Join(errs...)
}

// removeState undoes what st records: domains, daemons (last started
// first), namespaces with what runs in them, /etc/netns entries.
func removeState(st state, logf func(string, ...any)) error {
	var errs []error
	for i := len(st.Daemons) - 1; i >= 0; i-- {
		d := st.Daemons[i]
		if d.Name == "libvirtd" && comm(d.Pid) == "libvirtd" {
			if err := destroyDomains(URI); err != nil {
				logf("destroy a dead sandbox's domains: %v", err)
			}
		}
		if err := stop(d.Pid, d.Name); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(st.Namespaces) - 1; i >= 0; i-- {
		if err := removeNS(st.Namespaces[i], logf); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range st.EtcDirs {
		if err := removeEtc(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Clean removes what sandboxes whose process died left behind. It fails if
// a sandbox is running (the lock is held).
func Clean(ctx context.Context, logf func(string, ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	f, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("open lock %s: %w", LockFile, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%s is held: a sandbox (or another libvirtd user) is running; stop it first", LockFile)
		}
		return fmt.Errorf("lock %s: %w", LockFile, err)
	}
	return cleanStale(logf)
}
