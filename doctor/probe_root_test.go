package doctor

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/jitsu-unikernel/jitsu/internal/testenv"
)

// needRoot skips a root-tier test when not root, and fails it when CI=true.
func needRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s needs root, and CI=true", what)
	}
	t.Skipf("%s needs root", what)
}

// startLibvirtd starts the one sandbox (internal/sandbox through testenv:
// a private libvirtd in a network namespace under the machine-wide lock),
// removed at cleanup, and returns the URI to connect to.
func startLibvirtd(t *testing.T) string {
	t.Helper()
	return testenv.Libvirt(t).URI
}

// TestProbeBootRoot boots the generated probe kernel under a real libvirtd
// with domain type qemu (TCG works on every host) and expects the marker;
// then a kernel that prints nothing must time out as a hung KVM would.
func TestProbeBootRoot(t *testing.T) {
	needRoot(t, "the probe boot through a real libvirtd")
	uri := startLibvirtd(t)
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()

	took, err := probeBoot(ctx, conn, "qemu", "x86_64", "", 30*time.Second)
	if err != nil {
		t.Fatalf("probe boot with the generated kernel: %v", err)
	}
	t.Logf("probe boot under TCG printed %s after %v", ProbeMarker, took)

	// A multiboot kernel that halts at once without printing: the probe must
	// give errProbeTimeout and leave no domain behind.
	mute := ProbeELF()
	copy(mute[len(mute)-len(ProbeMarker)-3:], make([]byte, len(ProbeMarker)+3))
	dir, err := os.MkdirTemp("", "jitsu-doctor-test-") // o+x for QEMU's user, unlike t.TempDir
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := dir + "/mute.elf"
	if err := os.WriteFile(path, mute, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = probeBoot(ctx, conn, "qemu", "x86_64", path, 2*time.Second)
	if !errors.Is(err, errProbeTimeout) {
		t.Errorf("probe of a mute kernel: err = %v, want errProbeTimeout", err)
	}
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range doms {
		name, _ := d.GetName()
		if strings.HasPrefix(name, "jitsu-doctor-probe-") {
			t.Errorf("probe domain %s left behind", name)
		}
		d.Free()
	}
}
