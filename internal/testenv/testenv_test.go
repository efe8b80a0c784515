package testenv_test

import (
	"context"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/jitsu-unikernel/jitsu/internal/testenv"
)

// TestLibvirtEnv starts the environment, talks across the namespace's
// bridge address from inside it, and checks that cleanup removes it.
func TestLibvirtEnv(t *testing.T) {
	var ns string
	t.Run("up", func(t *testing.T) {
		e := testenv.Libvirt(t)
		ns = e.NS
		out, err := e.Command(context.Background(), "ip", "-br", "addr", "show", "dev", testenv.Bridge).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "10.213.0.1/24") {
			t.Fatalf("bridge in namespace: %v: %s", err, out)
		}
		var ln net.Listener
		if err := e.Do(func() (err error) {
			ln, err = net.Listen("tcp", testenv.Gateway.String()+":0")
			return err
		}); err != nil {
			t.Fatalf("listen inside namespace: %v", err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, _ = c.Write([]byte("hello"))
				c.Close()
			}
		}()
		c, err := e.DialContext(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial inside namespace: %v", err)
		}
		b, err := io.ReadAll(c)
		c.Close()
		if string(b) != "hello" {
			t.Fatalf("read %q, %v", b, err)
		}
		// The gateway address exists only inside the namespace.
		if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Errorf("dialled %s from the root namespace", ln.Addr())
		}
	})
	if ns == "" {
		return
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), ns) {
		t.Errorf("namespace %s still exists after cleanup", ns)
	}
}
