package summoner

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// Snapshot starts (issue 16): a unikernel with Snapshot is saved to a file
// (hypervisor.SaveSnapshot, an external save file, not a managed save
// image) after its first boot is ready, restored from it at once, and
// only then released; every later cold start restores the file (start
// mode ModeSnapshot). The file's name carries a hash of the spec and of
// the image files, so that a changed spec or image is never restored:
// at a start, the unikernel's files with another hash are removed; at Run
// and at every reload, the files of unikernels no longer configured (or
// no longer with Snapshot) are. So there is at most one file per
// unikernel. A restore that fails (a corrupt or incompatible file)
// removes the file and boots; a restore that fails right after the save
// that made the file turns snapshots off for that spec (no loop).

// snapshotExt ends every save file's name.
const snapshotExt = ".save"

// guestTimeTimeout bounds the SetGuestTime call after a restore.
const guestTimeTimeout = 2 * time.Second

// guestTimeRetry is the pause between SetGuestTime attempts while the
// restored guest's agent is not connected yet.
const guestTimeRetry = 20 * time.Millisecond

// snapshotPath is the save file of c's spec as it is now: in
// Options.SnapshotDir, named after the domain and a hash of the spec, the
// size and modification time of the kernel, initrd and disks, and the
// contents of the read-only (seed) disks, which jitsu rewrites at each
// reload.
func (s *Summoner) snapshotPath(c *Unikernel) (string, error) {
	sp := c.Spec
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %q %q %q %q %d %d %q %s %q %q %v\n", s.opts.SnapshotSalt, sp.Name, sp.Kernel,
		sp.Initrd, sp.Cmdline, sp.ReadOnlyDisks, sp.Disks, sp.MemoryBytes, sp.VCPUs, sp.Bridge, sp.NIC(),
		sp.DomainType, sp.ConsoleLog, sp.Agent)
	for _, f := range append([]string{sp.Kernel, sp.Initrd}, sp.Disks...) {
		if f == "" {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("snapshot hash: %w", err)
		}
		fmt.Fprintf(h, "%q %d %d\n", f, fi.Size(), fi.ModTime().UnixNano())
	}
	for _, f := range sp.ReadOnlyDisks {
		if err := hashFile(h, f); err != nil {
			return "", fmt.Errorf("snapshot hash: %w", err)
		}
	}
	return filepath.Join(s.opts.SnapshotDir, fmt.Sprintf("%s-%x%s", sp.Name, h.Sum(nil)[:8], snapshotExt)), nil
}

func hashFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// normalize is normalize plus the checks that need the options: a
// Snapshot unikernel needs Options.SnapshotDir.
func (s *Summoner) normalize(uks []Unikernel) ([]*Unikernel, error) {
	cfgs, err := normalize(uks)
	if err != nil {
		return nil, err
	}
	for _, c := range cfgs {
		if c.Snapshot && s.opts.SnapshotDir == "" {
			return nil, fmt.Errorf("unikernel %q: snapshot without a snapshot directory", c.Name)
		}
	}
	return cfgs, nil
}

// snapshotDomain returns the domain a save file's name belongs to, or ""
// for a file jitsu did not name.
func snapshotDomain(file string) string {
	base, ok := strings.CutSuffix(file, snapshotExt)
	i := strings.LastIndexByte(base, '-')
	if !ok || i < 1 || len(base)-i-1 != 16 {
		return ""
	}
	for _, r := range base[i+1:] {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return ""
		}
	}
	return base[:i]
}

// sweepSnapshots removes the save files that no configured unikernel with
// Snapshot would restore: those of unikernels removed or changed, with
// keep the only file a unikernel may keep.
func (s *Summoner) sweepSnapshots(keep func(domain, path string) bool) {
	if s.opts.SnapshotDir == "" {
		return
	}
	ents, err := os.ReadDir(s.opts.SnapshotDir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("reading the snapshot directory", zap.Error(err))
		}
		return
	}
	for _, e := range ents {
		dom := snapshotDomain(e.Name())
		path := filepath.Join(s.opts.SnapshotDir, e.Name())
		if dom == "" || e.IsDir() || keep(dom, path) {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("removing a stale snapshot", zap.String("path", path), zap.Error(err))
			continue
		}
		s.log.Info("stale snapshot removed", zap.String("domain", dom), zap.String("path", path))
	}
}

// sweepAll removes the save files of unikernels no longer configured with
// Snapshot, and those of the configured ones whose spec or image changed
// (at Run and at every reload).
func (s *Summoner) sweepAll() {
	want := map[string]string{}
	for _, u := range s.units.Load().all {
		if c := u.cfg.Load(); c.Snapshot {
			if p, err := s.snapshotPath(c); err == nil {
				want[u.domain] = p
			}
		}
	}
	s.sweepSnapshots(func(dom, path string) bool { return want[dom] == path })
}

// planSnapshot decides, for a cold start of u, whether to restore its save
// file (ModeSnapshot) or to boot (ModeBoot) and, for a snapshot
// unikernel, to make the file once ready. Files of u's domain with
// another hash are removed. Actor only.
func (s *Summoner) planSnapshot(u *unit, c *Unikernel) string {
	u.snapRestore, u.snapSave, u.snapPath = false, false, ""
	if !c.Snapshot {
		return ModeBoot
	}
	path, err := s.snapshotPath(c)
	if err != nil {
		s.log.Warn("no snapshot for this start", zap.String("unikernel", u.name), zap.Error(err))
		return ModeBoot
	}
	s.sweepSnapshots(func(dom, p string) bool { return dom != u.domain || p == path })
	u.snapPath = path
	if _, err := os.Stat(path); err == nil {
		u.snapRestore = true
		return ModeSnapshot
	}
	u.mu.Lock()
	broken := u.snapBroken == path
	u.mu.Unlock()
	u.snapSave = !broken
	return ModeBoot
}

// discardSnapshot removes a save file that could not be restored.
func (s *Summoner) discardSnapshot(u *unit, path, why string, err error) {
	s.m.snapshots.WithLabelValues(u.name, "restore", "error").Inc()
	if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		s.log.Warn("removing a snapshot", zap.String("unikernel", u.name), zap.Error(rerr))
	}
	s.log.Warn("snapshot restore failed; file discarded, booting instead", zap.String("unikernel", u.name),
		zap.String("why", why), zap.String("path", path), zap.Error(err))
}

// restoreOrBoot is the start call of a cold start with a save file: it
// restores the file, or, if that fails for another reason than an
// unavailable hypervisor or a domain that runs, discards it and boots.
func (s *Summoner) restoreOrBoot(ctx context.Context, u *unit, spec hypervisor.Spec, path string) error {
	t0 := time.Now()
	err := s.hv.RestoreSnapshot(ctx, spec, path)
	if err == nil {
		s.m.snapshots.WithLabelValues(u.name, "restore", "ok").Inc()
		s.log.Info("restored from snapshot", zap.String("unikernel", u.name), zap.Duration("took", time.Since(t0)))
		s.setGuestTime(ctx, u)
		return nil
	}
	if ctx.Err() != nil || errors.Is(err, hypervisor.ErrAlreadyRunning) || errors.Is(err, hypervisor.ErrUnavailable) {
		return err
	}
	s.discardSnapshot(u, path, "restore", err)
	u.mu.Lock()
	u.timeline.Mode = ModeBoot
	u.mu.Unlock()
	return s.hv.Start(ctx, spec)
}

// setGuestTime steps a restored guest's clock to the host's through its
// agent; best effort, under guestTimeTimeout: a failure is logged and
// counted.
func (s *Summoner) setGuestTime(ctx context.Context, u *unit) {
	t0 := time.Now()
	if err := s.retryGuestTime(ctx, u); err != nil {
		s.m.guestTime.WithLabelValues(u.name).Inc()
		s.log.Warn("setting the restored guest's clock failed", zap.String("unikernel", u.name), zap.Error(err))
		return
	}
	s.log.Debug("restored guest's clock set", zap.String("unikernel", u.name), zap.Duration("took", time.Since(t0)))
}

// retryGuestTime calls SetGuestTime under guestTimeTimeout.
func (s *Summoner) retryGuestTime(ctx context.Context, u *unit) error {
	tctx, cancel := context.WithTimeout(ctx, guestTimeTimeout)
	defer cancel()
	err := s.hv.SetGuestTime(tctx, u.domain)
	// An agent that cannot be reached yet (its socket not there, no
	// answer to the sync) is retried until the deadline.
	for errors.Is(err, hypervisor.ErrAgentUnresponsive) {
		select {
		case <-tctx.Done():
		case <-time.After(guestTimeRetry):
			err = s.hv.SetGuestTime(tctx, u.domain)
			continue
		}
		break
	}
	return err
}

// doSnapshot runs once a boot that makes u's save file is ready: beside
// the actor, under the create deadline, it saves the domain to the file
// and restores it at once; the probe that follows releases the gate.
func (s *Summoner) doSnapshot(u *unit, _ event, _ State) (*event, error) {
	path := u.snapPath
	s.startAsync(u, "snapshot failed", func(ctx context.Context, spec hypervisor.Spec) error {
		return s.saveAndRestore(ctx, u, spec, path)
	})
	return nil, nil
}

// saveAndRestore saves the running domain to path and restores it. A
// failed save carries on with the domain if it still runs (else boots);
// a failed restore discards the file, turns snapshots off for this spec
// and boots.
func (s *Summoner) saveAndRestore(ctx context.Context, u *unit, spec hypervisor.Spec, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		s.log.Warn("creating the snapshot directory", zap.String("unikernel", u.name), zap.Error(err))
	}
	// The guest's agent answers once before the save, so that the file
	// holds it waiting for the host, not still starting (the example's
	// waits up to 160 ms between tries to open its port): every restore
	// then reaches it at once.
	t0 := time.Now()
	if err := s.retryGuestTime(ctx, u); err != nil {
		s.log.Info("the guest's agent did not answer before the save; restores will wait for it",
			zap.String("unikernel", u.name), zap.Error(err))
	} else {
		s.log.Debug("guest agent answered before the save", zap.String("unikernel", u.name), zap.Duration("took", time.Since(t0)))
	}
	t0 = time.Now()
	if err := s.hv.SaveSnapshot(ctx, u.domain, path); err != nil {
		s.m.snapshots.WithLabelValues(u.name, "save", "error").Inc()
		_ = os.Remove(path)
		s.log.Warn("saving a snapshot failed", zap.String("unikernel", u.name), zap.Error(err))
		cctx, cancel := s.callCtx()
		st, serr := s.hv.State(cctx, u.domain)
		cancel()
		if serr == nil && st == hypervisor.StateRunning {
			return nil // it still runs: carry on with it
		}
		return s.hv.Start(ctx, spec)
	}
	saved := time.Since(t0)
	var size int64
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	s.m.snapshots.WithLabelValues(u.name, "save", "ok").Inc()
	t1 := time.Now()
	if err := s.hv.RestoreSnapshot(ctx, spec, path); err != nil {
		if ctx.Err() != nil || errors.Is(err, hypervisor.ErrUnavailable) {
			return err
		}
		u.mu.Lock()
		u.snapBroken = path
		u.mu.Unlock()
		s.discardSnapshot(u, path, "restore after save", err)
		return s.hv.Start(ctx, spec)
	}
	s.m.snapshots.WithLabelValues(u.name, "restore", "ok").Inc()
	s.log.Info("snapshot saved and restored", zap.String("unikernel", u.name), zap.String("path", path),
		zap.Int64("bytes", size), zap.Duration("save_took", saved), zap.Duration("restore_took", time.Since(t1)))
	s.setGuestTime(ctx, u)
	return nil
}
