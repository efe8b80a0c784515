package benchkit

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/hypervisor/libvirt"
	"github.com/jitsu-unikernel/jitsu/internal/sandbox"
)

// WorkDir makes a temporary directory under /var/lib/jitsu named after
// prefix that QEMU (running as libvirt-qemu) can traverse, for consoles,
// configs and sockets. remove removes it.
func WorkDir(prefix string) (dir string, remove func(), err error) {
	dir, err = os.MkdirTemp("/var/lib/jitsu", prefix)
	if err != nil {
		return "", nil, fmt.Errorf("make work directory: %w", err)
	}
	remove = func() { _ = os.RemoveAll(dir) }
	if err := os.Chmod(dir, 0o755); err != nil {
		remove()
		return "", nil, fmt.Errorf("make work directory: %w", err)
	}
	return dir, remove, nil
}

// Host is what a boot benchmark boots on: the example image, a sandbox
// with its own libvirtd, a work directory (WorkDir), and jitsu's hypervisor on that
// libvirtd, its events drained.
type Host struct {
	Image sandbox.Image // the example unikernel's
	Env   *sandbox.Env
	Dir   string
	HV    *libvirt.Hypervisor

	removeDir func()
}

// StartHost starts a Host whose work directory is named after prefix.
// The caller closes it.
func StartHost(ctx context.Context, prefix string) (_ *Host, err error) {
	img, err := sandbox.FindExampleImage()
	if err != nil {
		return nil, err
	}
	env, err := sandbox.Start(ctx, sandbox.Options{Logf: func(f string, a ...any) { log.Printf("sandbox: "+f, a...) }})
	if err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	h := &Host{Image: img, Env: env}
	defer func() {
		if err != nil {
			err = errors.Join(err, h.Close())
		}
	}()
	if h.Dir, h.removeDir, err = WorkDir(prefix); err != nil {
		return nil, err
	}
	h.HV, err = libvirt.New(ctx, libvirt.Options{URI: env.URI, ConsoleDir: h.Dir, ShutdownTimeout: config.DefaultShutdownTimeout})
	if err != nil {
		return nil, err
	}
	go func() { // keep the events channel drained (Close closes it)
		for range h.HV.Events() {
		}
	}()
	return h, nil
}

// Close closes the hypervisor, removes the work directory and stops the
// sandbox.
func (h *Host) Close() error {
	if h.HV != nil {
		_ = h.HV.Close() // as the benchmarks always did: the sandbox's end matters
	}
	if h.removeDir != nil {
		h.removeDir()
	}
	return h.Env.Close()
}

// Main runs a benchmark's run until it returns or SIGINT or SIGTERM
// cancels its context, logging without timestamps; if run fails, Main
// logs the error after name and exits with status 1.
func Main(name string, run func(ctx context.Context) error) {
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		log.Printf("%s: %v", name, err)
		os.Exit(1)
	}
}
