package sandbox

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestInNamespaceNeverSwitchesTheMainThread: InNamespace runs fn inside
// the namespace, also when its goroutine starts on the main thread (which
// it then holds while another thread does the work), and the process's own
// namespace (its main thread's) never changes: `ip netns pids` never lists
// the process, so removing the namespace does not kill it.
func TestInNamespaceNeverSwitchesTheMainThread(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: root tier: needs root")
		}
		t.Skip("root tier: needs root (network namespaces)")
	}
	name := "jitsu-sb-innstest-" + strconv.Itoa(os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	target := nsInode(t, "/run/netns/"+name)
	own := nsInode(t, "/proc/self/ns/net")

	// The goroutine pretends to start on the main thread: the work moves
	// to another thread, and still runs in the namespace.
	real := onMainThread
	var first atomic.Bool
	first.Store(true)
	onMainThread = func() bool { return first.Swap(false) || real() }
	var in uint64
	err := InNamespace(name, func() error {
		in = nsInode(t, "/proc/thread-self/ns/net")
		return nil
	})
	onMainThread = real
	if err != nil || in != target {
		t.Fatalf("InNamespace via the held main thread: ran in namespace %d (%v), want %d", in, err, target)
	}

	for i := range 300 {
		if err := InNamespace(name, func() error { return nil }); err != nil {
			t.Fatalf("InNamespace #%d: %v", i, err)
		}
	}
	if got := nsInode(t, "/proc/self/ns/net"); got != own {
		t.Fatalf("the process's namespace changed from %d to %d (the main thread was switched)", own, got)
	}
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		t.Fatalf("ip netns pids: %v", err)
	}
	for _, f := range strings.Fields(string(out)) {
		if f == strconv.Itoa(os.Getpid()) {
			t.Fatalf("ip netns pids %s lists this process", name)
		}
	}
}

// nsInode returns the inode of a namespace file.
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}
