package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLockInstance: a second lock of the same instance is refused with the
// holder's pid; once released, it can be taken again.
func TestLockInstance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "blue.lock")
	unlock, err := lockInstance(path, "blue")
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q (%v), want this pid", b, err)
	}
	_, err = lockInstance(path, "blue")
	if err == nil || !strings.Contains(err.Error(), "another jitsu with instance id \"blue\"") ||
		!strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("second lock: %v, want a refusal naming the holder's pid", err)
	}
	other, err := lockInstance(filepath.Join(filepath.Dir(path), "green.lock"), "green")
	if err != nil {
		t.Errorf("lock of another instance: %v", err)
	} else {
		other()
	}
	unlock()
	again, err := lockInstance(path, "blue")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
}
