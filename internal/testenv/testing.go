package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/internal/sandbox"
)

// InCI reports whether the tests run in CI (CI=true), where missing
// prerequisites fail instead of skipping.
func InCI() bool { return os.Getenv("CI") == "true" }

// skipOrFatal skips the test, or fails it in CI.
func skipOrFatal(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireRoot skips the test unless it runs as root; in CI it fails.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFatal(t, "root tier: needs root (run as root, e.g. make test-root)")
	}
}

// Libvirt starts the environment for t (see StartLibvirt) and cleans it up
// when t ends, also when it fails. It skips when root or a binary is
// missing, except in CI where it fails.
func Libvirt(t testing.TB) *Env {
	t.Helper()
	return LibvirtWith(t, Options{})
}

// LibvirtWith is Libvirt with options, e.g. a client namespace
// (Options.ClientNS), removed with the rest. Options.Logf is t.Logf.
func LibvirtWith(t testing.TB, o Options) *Env {
	t.Helper()
	RequireRoot(t)
	if err := sandbox.Prerequisites(); err != nil {
		skipOrFatal(t, "root tier: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	o.Logf = t.Logf
	e, err := sandbox.Start(ctx, o)
	if err != nil {
		t.Fatalf("start libvirt test environment: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("clean up libvirt test environment: %v", err)
		}
	})
	return e
}

// ExampleImage returns the example unikernel image; if it is not built, it
// skips ("run make image"), or fails in CI.
func ExampleImage(t testing.TB) Image {
	t.Helper()
	img, err := sandbox.FindExampleImage()
	if err != nil {
		skipOrFatal(t, "%v", err)
	}
	return img
}
