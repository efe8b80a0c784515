package sandbox_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/internal/sandbox"
	"github.com/jitsu-unikernel/jitsu/internal/testenv"
)

// TestStartRemovesDeadSandbox: what a sandbox killed with SIGKILL left (its
// state file and namespace) is removed by the next Start; the client
// namespace reaches the host namespace over the veth pair and resolves
// through it; Close removes both namespaces, /etc/netns and the state.
func TestStartRemovesDeadSandbox(t *testing.T) {
	testenv.RequireRoot(t)
	if err := sandbox.Prerequisites(); err != nil {
		if testenv.InCI() {
			t.Fatalf("CI=true: %v", err)
		}
		t.Skipf("root tier: %v", err)
	}
	// A dead sandbox: a namespace and its state file, owner long gone.
	dead := "jitsu-sb-deadtest"
	if out, err := exec.Command("ip", "netns", "add", dead).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", dead).Run() })
	st, _ := json.Marshal(map[string]any{"owner": 1 << 22, "namespaces": []string{dead}})
	if err := os.MkdirAll(sandbox.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	stateFile := filepath.Join(sandbox.StateDir, dead+".json")
	if err := os.WriteFile(stateFile, st, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(stateFile) })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env, err := sandbox.Start(ctx, sandbox.Options{NS: "jitsu-sb-roottest", ClientNS: "jitsu-sb-roottest-c", Logf: t.Logf})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = env.Close()
		}
	}()
	if exists("/run/netns/"+dead) || exists(stateFile) {
		t.Errorf("the dead sandbox's namespace or state file is still there after Start")
	}

	// The client reaches a listener in the host namespace, and its
	// resolv.conf names the host end of the veth pair.
	hostAddr, _, _ := strings.Cut(sandbox.ClientHostCIDR, "/")
	var ln net.Listener
	if err := env.Do(func() (err error) { ln, err = net.Listen("tcp", hostAddr+":0"); return err }); err != nil {
		t.Fatalf("listen in the host namespace: %v", err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}()
	var got []byte
	err = sandbox.InNamespace(env.ClientNS, func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		got, err = io.ReadAll(c)
		return err
	})
	if err != nil || string(got) != "hi" {
		t.Errorf("client namespace to host namespace: %q, %v", got, err)
	}
	out, err := exec.Command("ip", "netns", "exec", env.ClientNS, "cat", "/etc/resolv.conf").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nameserver "+hostAddr) {
		t.Errorf("client resolv.conf: %v: %s", err, out)
	}

	closed = true
	if err := env.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	for _, p := range []string{"/run/netns/" + env.NS, "/run/netns/" + env.ClientNS, "/etc/netns/" + env.ClientNS,
		filepath.Join(sandbox.StateDir, env.NS+".json")} {
		if exists(p) {
			t.Errorf("%s still exists after Close", p)
		}
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
