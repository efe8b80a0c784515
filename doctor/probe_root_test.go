package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"libvirt.org/go/libvirt"
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

// missing skips (or fails under CI=true) for a missing requirement.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI=true: the root tier must not skip)", args...)
	}
	t.Skipf(format, args...)
}

// startLibvirtd runs a private libvirtd (and virtlogd if none runs) inside
// a fresh network namespace while holding /run/jitsu-libvirtd.lock, the
// machine-wide lock of the one libvirtd, and stops it all at cleanup. It
// returns the URI to connect to.
func startLibvirtd(t *testing.T) string {
	t.Helper()
	for _, bin := range []string{"libvirtd", "virtlogd", "ip", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing(t, "%s not installed (apt-get install libvirt-daemon-system qemu-system-x86 iproute2)", bin)
		}
	}
	lock, err := os.OpenFile("/run/jitsu-libvirtd.lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("open libvirtd lock: %v", err)
	}
	t.Cleanup(func() { lock.Close() })
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("take libvirtd lock: %v", err)
	}
	t.Cleanup(func() { syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) })
	if out, err := exec.Command("pgrep", "-x", "libvirtd").Output(); err == nil {
		missing(t, "a libvirtd not started under /run/jitsu-libvirtd.lock is running (pid %s)", strings.TrimSpace(string(out)))
	}

	ns := fmt.Sprintf("jitsu-doctor-%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })

	if exec.Command("pgrep", "-x", "virtlogd").Run() != nil {
		run("ip", "netns", "exec", ns, "virtlogd", "-d")
		t.Cleanup(func() { killPidFile(t, "/run/virtlogd.pid") })
	}
	run("ip", "netns", "exec", ns, "libvirtd", "-d")
	t.Cleanup(func() { killPidFile(t, "/run/libvirtd.pid") })

	const uri = "qemu:///system"
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := libvirt.NewConnect(uri)
		if err == nil {
			c.Close()
			return uri
		}
		if time.Now().After(deadline) {
			t.Fatalf("libvirtd did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killPidFile stops the daemon whose pid file is path, and waits for it.
func killPidFile(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("stop daemon: %v", err)
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Logf("stop daemon: bad pid file %s: %q", path, b)
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 200; i++ {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
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
