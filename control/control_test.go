package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeDaemon records calls and answers from its fields.
type fakeDaemon struct {
	mu       sync.Mutex
	status   []UnikernelStatus
	known    map[string]bool
	reload   error
	calls    []string
	blockCtx chan struct{} // if set, Start blocks until ctx is done and closes it
}

func (f *fakeDaemon) Status(context.Context) ([]UnikernelStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "status")
	return f.status, nil
}

func (f *fakeDaemon) Start(ctx context.Context, name string) error {
	f.mu.Lock()
	f.calls = append(f.calls, "start "+name)
	block := f.blockCtx
	f.mu.Unlock()
	if block != nil {
		<-ctx.Done()
		close(block)
		return ctx.Err()
	}
	if !f.known[name] {
		return fmt.Errorf("start %q: %w", name, ErrUnknown)
	}
	return nil
}

func (f *fakeDaemon) Stop(_ context.Context, name, mode string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "stop "+name+" "+mode)
	if !f.known[name] {
		return fmt.Errorf("stop %q: %w", name, ErrUnknown)
	}
	switch mode {
	case "", "destroy", "shutdown", "suspend", "save":
		return nil
	}
	return fmt.Errorf("stop mode %q: %w", mode, ErrInvalid)
}

func (f *fakeDaemon) Reload(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "reload")
	return f.reload
}

// serve starts a server on a fresh socket and stops it at cleanup.
func serve(t *testing.T, d Daemon) (*Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl", "control.sock")
	s, err := New(path, 0o600, d, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket left after Run returned: %v", err)
		}
	})
	return s, path
}

func dial(t *testing.T, path string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRoundTrip(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	want := []UnikernelStatus{
		{Name: "www", State: "ready", Addrs: []string{"10.0.0.2"}, Since: t0, LastActivity: t0.Add(time.Second), Boots: 3,
			LastBootDuration: 1500 * time.Millisecond,
			LastBoot:         &BootTimeline{Query: t0, Start: t0.Add(time.Millisecond), Ready: t0.Add(1501 * time.Millisecond)},
		},
		{Name: "blog", State: "stopped", LastError: "boot timed out"},
	}
	d := &fakeDaemon{status: want, known: map[string]bool{"www": true}}
	_, path := serve(t, d)
	c := dial(t, path)
	ctx := context.Background()

	got, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("Status: got %d unikernels, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.State != w.State || !g.Since.Equal(w.Since) || !g.LastActivity.Equal(w.LastActivity) ||
			g.Boots != w.Boots || g.LastBootDuration != w.LastBootDuration || g.LastError != w.LastError ||
			strings.Join(g.Addrs, ",") != strings.Join(w.Addrs, ",") {
			t.Errorf("Status[%d] = %+v, want %+v", i, g, w)
		}
		if (g.LastBoot == nil) != (w.LastBoot == nil) {
			t.Fatalf("Status[%d].LastBoot = %v, want %v", i, g.LastBoot, w.LastBoot)
		}
		if w.LastBoot != nil && (!g.LastBoot.Query.Equal(w.LastBoot.Query) || !g.LastBoot.Ready.Equal(w.LastBoot.Ready) || !g.LastBoot.FirstReplay.IsZero()) {
			t.Errorf("Status[%d].LastBoot = %+v, want %+v", i, g.LastBoot, w.LastBoot)
		}
	}
	// Same connection, several requests in turn.
	if err := c.Start(ctx, "www"); err != nil {
		t.Errorf("Start(www): %v", err)
	}
	if err := c.Stop(ctx, "www", "suspend"); err != nil {
		t.Errorf("Stop(www, suspend): %v", err)
	}
	if err := c.Reload(ctx); err != nil {
		t.Errorf("Reload: %v", err)
	}
	d.mu.Lock()
	calls := strings.Join(d.calls, "|")
	d.mu.Unlock()
	if calls != "status|start www|stop www suspend|reload" {
		t.Errorf("daemon calls = %q", calls)
	}
}

func TestRemoteErrors(t *testing.T) {
	d := &fakeDaemon{known: map[string]bool{"www": true},
		reload: fmt.Errorf("%w: jitsu.toml:12: unikernel \"x\": kernel missing", ErrConfig)}
	_, path := serve(t, d)
	c := dial(t, path)
	ctx := context.Background()
	tests := []struct {
		name     string
		call     func() error
		want     error
		contains string
	}{
		{"start unknown", func() error { return c.Start(ctx, "nope") }, ErrUnknown, `"nope"`},
		{"stop unknown", func() error { return c.Stop(ctx, "nope", "") }, ErrUnknown, `"nope"`},
		{"stop bad mode", func() error { return c.Stop(ctx, "www", "explode") }, ErrInvalid, "explode"},
		{"start empty name", func() error { return c.Start(ctx, "") }, ErrInvalid, "missing unikernel name"},
		{"reload invalid config", func() error { return c.Reload(ctx) }, ErrConfig, "jitsu.toml:12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want errors.Is %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("err = %q, want it to contain %q", err, tt.contains)
			}
			var re *RemoteError
			if !errors.As(err, &re) {
				t.Errorf("err = %T, want a *RemoteError inside", err)
			}
		})
	}
}

func TestBadWireInput(t *testing.T) {
	_, path := serve(t, &fakeDaemon{})
	tests := []struct {
		name, line, wantCode string
	}{
		{"not json", "hello\n", codeInvalid},
		{"old version", `{"v":0,"op":"status"}` + "\n", codeVersion},
		{"future version", `{"v":99,"op":"status"}` + "\n", codeVersion},
		{"unknown op", `{"v":1,"op":"explode"}` + "\n", codeInvalid},
		{"too long", `{"v":1,"op":"` + strings.Repeat("x", maxRequest) + `"}` + "\n", codeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte(tt.line)); err != nil {
				t.Fatal(err)
			}
			resp, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			if !strings.Contains(resp, `"code":"`+tt.wantCode+`"`) {
				t.Errorf("response %q, want code %q", resp, tt.wantCode)
			}
		})
	}
	// The server still answers after all that.
	if _, err := dial(t, path).Status(context.Background()); err != nil {
		t.Errorf("Status after bad input: %v", err)
	}
}

func TestDialErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	_, err := Dial(context.Background(), missing)
	if !errors.Is(err, ErrNotRunning) || err.Error() != "jitsu is not running (no socket at "+missing+")" {
		t.Errorf("missing socket: err = %v", err)
	}

	// A stale socket: bound, then its listener gone without unlinking.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	_, err = Dial(context.Background(), stale)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), stale) {
		t.Errorf("stale socket: err = %v", err)
	}
	// Listen replaces the stale socket.
	s, err := Listen(stale, 0o600, &fakeDaemon{}, nil)
	if err != nil {
		t.Fatalf("Listen over stale socket: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
}

func TestListenRefusesLiveSocketAndNonSocket(t *testing.T) {
	s, path := serve(t, &fakeDaemon{})
	if _, err := Listen(path, 0o600, &fakeDaemon{}, nil); err == nil || !strings.Contains(err.Error(), "another jitsu") {
		t.Errorf("Listen on a live socket: err = %v", err)
	}
	if fi, err := os.Stat(s.Addr()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file, 0o600, &fakeDaemon{}, nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a regular file: err = %v", err)
	}
}

func TestPermissionDenied(t *testing.T) {
	// Root bypasses file permissions, so map what connect returns to an
	// unprivileged user (EACCES) on a real socket.
	_, path := serve(t, &fakeDaemon{})
	err := dialError(path, &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)})
	if !errors.Is(err, ErrPermission) || !strings.HasPrefix(err.Error(), "permission denied on "+path+": run as root or a member of") {
		t.Errorf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "group-writable") {
		t.Errorf("err = %q, want the hint that a 0600 socket must become group-writable", err)
	}
}

func TestServerCloseCancelsRunningRequest(t *testing.T) {
	block := make(chan struct{})
	d := &fakeDaemon{blockCtx: block}
	path := filepath.Join(t.TempDir(), "control.sock")
	s, err := Listen(path, 0o600, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res := make(chan error, 1)
	go func() { res <- c.Start(context.Background(), "www") }()
	// Wait until the daemon holds the request.
	for {
		d.mu.Lock()
		n := len(d.calls)
		d.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	<-block // the daemon saw its context cancelled
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := <-res; err == nil {
		t.Error("Start returned nil although the server closed")
	}
}

func TestClientContextCancel(t *testing.T) {
	// A server that never answers.
	path := filepath.Join(t.TempDir(), "mute.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { _, err := c.Status(ctx); res <- err }()
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if sc, ok := <-accepted; ok {
		sc.Close()
	}
}
