package libvirt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	lv "libvirt.org/go/libvirt"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// SaveSnapshot saves the running domain to the file at path
// (virDomainSaveFlags, not a managed save: a restore from a managed save
// image consumes it) and stops it. See hypervisor.Hypervisor.
func (h *Hypervisor) SaveSnapshot(ctx context.Context, name, path string) error {
	return h.call(ctx, "save", name, func() error { return h.saveSnapshot(ctx, name, path) })
}

func (h *Hypervisor) saveSnapshot(ctx context.Context, name, path string) error {
	_, d, st, done, err := h.openDomain(ctx, "save", name)
	if err != nil {
		return err
	}
	defer done()
	if st != lv.DOMAIN_RUNNING && st != lv.DOMAIN_BLOCKED {
		return fmt.Errorf("save %q: %w", name, hypervisor.ErrNotRunning)
	}
	t0 := time.Now()
	h.setSaving(name, true)
	err = h.stopping(name, func() error { return d.SaveFlags(path, "", 0) })
	if err != nil {
		h.setSaving(name, false)
		return h.wrap("save to "+path+":", name, err)
	}
	h.log.Info("domain saved to a file", zap.String("domain", name), zap.String("path", path),
		zap.Duration("took", time.Since(t0)))
	return nil
}

// RestoreSnapshot starts spec's domain from the save file at path
// (virDomainRestoreFlags, with the configuration saved in the file),
// keeping the file. See hypervisor.Hypervisor.
func (h *Hypervisor) RestoreSnapshot(ctx context.Context, spec hypervisor.Spec, path string) error {
	return h.call(ctx, "restore", spec.Name, func() error { return h.restoreSnapshot(ctx, spec, path, 0) })
}

// PrepareSnapshot restores spec's domain from the save file at path
// paused (VIR_DOMAIN_SAVE_PAUSED): a warm domain. See
// hypervisor.Hypervisor.
func (h *Hypervisor) PrepareSnapshot(ctx context.Context, spec hypervisor.Spec, path string) error {
	return h.call(ctx, "restore paused", spec.Name, func() error {
		return h.restoreSnapshot(ctx, spec, path, lv.DOMAIN_SAVE_PAUSED)
	})
}

func (h *Hypervisor) restoreSnapshot(ctx context.Context, spec hypervisor.Spec, path string, flags lv.DomainSaveRestoreFlags) error {
	unlock, err := h.lockName(ctx, spec.Name)
	if err != nil {
		return fmt.Errorf("restore %q: %w", spec.Name, err)
	}
	defer unlock()
	conn, err := h.acquire()
	if err != nil {
		return fmt.Errorf("restore %q: %w", spec.Name, err)
	}
	defer release(conn)
	d, _, err := h.lookup(conn, "restore", spec.Name)
	switch {
	case err == nil:
		st, _, serr := d.GetState()
		_ = d.Free()
		if serr != nil {
			return h.wrap("get state of", spec.Name, serr)
		}
		if st != lv.DOMAIN_SHUTOFF && st != lv.DOMAIN_CRASHED {
			return fmt.Errorf("restore %q: %w", spec.Name, hypervisor.ErrAlreadyRunning)
		}
	case !errors.Is(err, hypervisor.ErrNotFound):
		return err
	}
	if err := prepareConsole(h.consolePath(spec)); err != nil {
		return fmt.Errorf("restore %q: %w", spec.Name, err)
	}
	h.remember(spec.Name, metadata{Name: spec.Name, MAC: spec.NIC().String(), Instance: h.opts.Instance})
	t0 := time.Now()
	if err := conn.DomainRestoreFlags(path, "", flags); err != nil {
		return h.wrap("restore from "+path+":", spec.Name, err)
	}
	h.settleConsole(h.consolePath(spec))
	h.log.Info("domain restored from a file", zap.String("domain", spec.Name), zap.String("path", path),
		zap.Bool("paused", flags&lv.DOMAIN_SAVE_PAUSED != 0), zap.Duration("took", time.Since(t0)))
	return nil
}
