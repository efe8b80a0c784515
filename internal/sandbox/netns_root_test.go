package sandbox

import (
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestInNamespaceFromMainThread: when InNamespace's goroutine starts on
// the main thread, it holds that thread while another one does the work,
// in the namespace (TestInNamespaceLeavesProcess checks, by numbers, that
// the process's own namespace never changes).
func TestInNamespaceFromMainThread(t *testing.T) {
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
