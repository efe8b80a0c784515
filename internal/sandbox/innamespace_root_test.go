package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// TestInNamespaceLeavesProcess: however often InNamespace runs, the
// process's main thread (what `ip netns pids` looks at) stays in its own
// namespace; before the fix a call scheduled on the main thread left the
// whole process in the namespace, and removing the namespace killed it.
func TestInNamespaceLeavesProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	ns := fmt.Sprintf("jitsu-innstest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	self := fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
	before, err := os.Readlink(self)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 2000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := InNamespace(ns, func() error { return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if after, _ := os.Readlink(self); after != before {
		t.Fatalf("the main thread's namespace went from %s to %s", before, after)
	}
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	if len(out) != 0 {
		t.Errorf("processes in %s: %s", ns, out)
	}
}
