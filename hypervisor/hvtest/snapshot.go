package hvtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// savedDomain is what the fake writes to a save file: the spec and the
// guest's clock at the save.
type savedDomain struct {
	Spec      hypervisor.Spec
	GuestTime time.Time
}

// snapshotMagic starts every save file the fake writes; a file without it
// is corrupt.
var snapshotMagic = []byte("hvtest snapshot\n")

// SaveSnapshot implements hypervisor.Hypervisor: it writes the domain's
// spec to path (a file RestoreSnapshot reads) and stops the domain
// (EventStopped, Detail "saved"), which is then shut off.
func (f *Fake) SaveSnapshot(ctx context.Context, name, path string) error {
	err := f.saveSnapshot(ctx, name, path)
	f.record(Call{Op: "save-snapshot", Name: name, Err: err})
	if err != nil {
		return fmt.Errorf("save %q to %s: %w", name, path, err)
	}
	return nil
}

func (f *Fake) saveSnapshot(ctx context.Context, name, path string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return f.withDomain(ctx, name, func(d *domain) error {
		if d.state != hypervisor.StateRunning {
			return hypervisor.ErrNotRunning
		}
		if err, ok := f.failSave[name]; ok {
			delete(f.failSave, name)
			return err
		}
		now := time.Now()
		b, err := json.Marshal(savedDomain{Spec: d.spec, GuestTime: now.Add(-d.lag)})
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, append(bytes.Clone(snapshotMagic), b...), 0o600); err != nil {
			return err
		}
		d.state = hypervisor.StateShutoff
		d.ready = false
		d.stopClock(now)
		f.emitLocked(name, hypervisor.EventStopped, "saved")
		f.changedLocked()
		return nil
	})
}

// RestoreSnapshot implements hypervisor.Hypervisor: it reads a file
// written by SaveSnapshot (a file without the fake's header is corrupt)
// and starts the domain with the spec saved in it (EventStarted, Detail
// "restored"), its guest's clock going on from the time of the save (see
// GuestClock); its guest is ready per SetAutoReady. The file stays.
func (f *Fake) RestoreSnapshot(ctx context.Context, spec hypervisor.Spec, path string) error {
	err := f.restoreSnapshot(ctx, spec, path, false)
	f.record(Call{Op: "restore-snapshot", Name: spec.Name, Err: err})
	if err != nil {
		return fmt.Errorf("restore %q from %s: %w", spec.Name, path, err)
	}
	return nil
}

// PrepareSnapshot implements hypervisor.Hypervisor: RestoreSnapshot with
// the domain left paused (EventStarted "restored", then EventSuspended
// "paused", as Prepare), its guest's clock stopped until Resume; recorded
// as Op "prepare-snapshot".
func (f *Fake) PrepareSnapshot(ctx context.Context, spec hypervisor.Spec, path string) error {
	err := f.restoreSnapshot(ctx, spec, path, true)
	f.record(Call{Op: "prepare-snapshot", Name: spec.Name, Err: err})
	if err != nil {
		return fmt.Errorf("restore %q paused from %s: %w", spec.Name, path, err)
	}
	return nil
}

func (f *Fake) restoreSnapshot(ctx context.Context, spec hypervisor.Spec, path string, paused bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := f.waitHang(ctx, f.hang, spec.Name); err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var saved savedDomain
	if !bytes.HasPrefix(b, snapshotMagic) {
		return errors.New("not a save file")
	}
	if err := json.Unmarshal(b[len(snapshotMagic):], &saved); err != nil {
		return fmt.Errorf("corrupt save file: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLocked(spec.Name); err != nil {
		return err
	}
	if err, ok := f.failRestore[spec.Name]; ok {
		delete(f.failRestore, spec.Name)
		return err
	}
	d := f.domains[spec.Name]
	if d == nil {
		d = &domain{}
		f.domains[spec.Name] = d
	}
	if d.state == hypervisor.StateRunning || d.state == hypervisor.StatePaused {
		return hypervisor.ErrAlreadyRunning
	}
	now := time.Now()
	d.spec = saved.Spec
	d.state = hypervisor.StateRunning
	// The guest's clock goes on from the save: behind by the time since.
	d.lag, d.stoppedAt = now.Sub(saved.GuestTime), time.Time{}
	d.started = now
	d.starts++
	d.restores++
	d.ready = f.autoReady
	f.emitLocked(spec.Name, hypervisor.EventStarted, "restored")
	if paused {
		d.state = hypervisor.StatePaused
		d.stopClock(now)
		f.emitLocked(spec.Name, hypervisor.EventSuspended, "paused")
	}
	f.changedLocked()
	return nil
}

// FailSave makes the next SaveSnapshot of name fail with err (wrapped),
// leaving the domain running.
func (f *Fake) FailSave(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failSave[name] = err
}

// FailRestore makes the next RestoreSnapshot of name fail with err
// (wrapped), as a corrupt or incompatible file would.
func (f *Fake) FailRestore(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failRestore[name] = err
}

// Restores returns how many times name was restored from a save file.
func (f *Fake) Restores(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.domains[name]; d != nil {
		return d.restores
	}
	return 0
}
