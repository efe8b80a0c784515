package libvirt

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// maxCalls bounds the libvirt calls in flight on one backend: each runs
// on its own goroutine (the binding's calls are blocking cgo calls that no
// context can interrupt), so a hung libvirtd costs at most this many
// goroutines, and further calls wait for a slot, within their own
// deadline.
const maxCalls = 32

// closeWait is how long Close waits for calls still in flight (a hung
// libvirtd) before it returns without them.
const closeWait = 5 * time.Second

// call runs fn, one operation op on the domain name made of blocking
// libvirt calls, on a goroutine of its own, and returns its error, or,
// as soon as ctx ends first, an error wrapping ctx's: a hung libvirtd
// never blocks the caller past its deadline. fn then finishes in the
// background (its outcome is unknown to the caller: the summoner
// reconciles), holding its slot, until libvirt answers or the keepalive
// drops the connection.
func (h *Hypervisor) call(ctx context.Context, op, name string, fn func() error) error {
	select {
	case h.calls <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%s %q: %d libvirt calls in flight, none returned in time: %w", op, name, cap(h.calls), ctx.Err())
	}
	h.inflight.Add(1)
	done := make(chan error, 1)
	go func() {
		defer h.inflight.Done()
		defer func() { <-h.calls }()
		done <- fn()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		h.m.callTimeouts.Inc()
		h.log.Warn("libvirt call still running after its deadline; carrying on without it",
			zap.String("op", op), zap.String("domain", name), zap.Error(ctx.Err()))
		return fmt.Errorf("%s %q: no answer from libvirt in time (outcome unknown): %w", op, name, ctx.Err())
	}
}

// callValue is call for an fn that returns a value. The value is handed
// over through a channel, only once fn has returned: when the deadline
// passes first, fn goes on in the background and its late result is
// dropped (the caller gets the zero value and the error), without a data
// race on a variable the caller has moved on from.
func callValue[T any](h *Hypervisor, ctx context.Context, op, name string, fn func() (T, error)) (T, error) {
	res := make(chan T, 1)
	err := h.call(ctx, op, name, func() error {
		v, err := fn()
		res <- v
		return err
	})
	select {
	case v := <-res:
		return v, err
	default: // the deadline passed first
		var zero T
		return zero, err
	}
}

// waitCalls waits up to closeWait for the calls in flight.
func (h *Hypervisor) waitCalls() {
	done := make(chan struct{})
	go func() {
		h.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
		h.log.Warn("closing with libvirt calls still in flight (libvirtd hung?)")
	}
}
