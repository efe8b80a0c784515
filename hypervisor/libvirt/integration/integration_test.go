package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	lv "libvirt.org/go/libvirt"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/hypervisor/hvcontract"
	"github.com/jitsu-unikernel/jitsu/hypervisor/libvirt"
	"github.com/jitsu-unikernel/jitsu/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// guestIP is the example unikernel's address on the test bridge.
const guestIP = "10.213.0.5"

// cmdline is the image's recommended command line plus the guest address.
func cmdline(img testenv.Image, ip string) string {
	return fmt.Sprintf("%s ip=%s::10.213.0.1:255.255.255.0::eth0:off", img.Cmdline, ip)
}

// consoleDir is a console log directory QEMU (libvirt-qemu) can traverse.
func consoleDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("/var/lib/jitsu", fmt.Sprintf("console-test-%d", os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create console dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func newHypervisor(t *testing.T, env *testenv.Env, dir string) *libvirt.Hypervisor {
	t.Helper()
	hv, err := libvirt.New(context.Background(), libvirt.Options{
		URI:             env.URI,
		Logger:          zaptest.NewLogger(t),
		ConsoleDir:      dir,
		ShutdownTimeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatalf("libvirt.New(%s): %v", env.URI, err)
	}
	t.Cleanup(func() { _ = hv.Close() })
	return hv
}

func exampleSpec(img testenv.Image, name, ip string) hypervisor.Spec {
	return hypervisor.Spec{
		Name: name, Kernel: img.Kernel, Initrd: img.Initrd, Cmdline: cmdline(img, ip),
		MemoryBytes: 128 << 20, Bridge: testenv.Bridge, DomainType: "qemu",
	}
}

// killQEMU kills the QEMU process of domain name from outside libvirt.
func killQEMU(t *testing.T, name string) {
	t.Helper()
	pid, err := testenv.QEMUPid(name)
	if err != nil {
		t.Fatalf("find QEMU of %q: %v", name, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill QEMU %d: %v", pid, err)
	}
}

// TestContractQEMU runs the hypervisor contract over a real libvirtd booting
// the example unikernel under QEMU TCG.
func TestContractQEMU(t *testing.T) {
	env := testenv.Libvirt(t)
	img := testenv.ExampleImage(t)
	dir := consoleDir(t)
	n := 10
	hvcontract.Run(t, hvcontract.Harness{
		New: func(t *testing.T) hypervisor.Hypervisor { return newHypervisor(t, env, dir) },
		Spec: func(t *testing.T, name string) hypervisor.Spec {
			n++ // every domain its own address; several may run at once
			return exampleSpec(img, name, fmt.Sprintf("10.213.0.%d", n))
		},
		Crash: func(t *testing.T, _ hypervisor.Hypervisor, name string) { killQEMU(t, name) },
		Foreign: func(t *testing.T, _ hypervisor.Hypervisor) string {
			return defineForeign(t, env, img)
		},
		GuestClock: func(t *testing.T, _ hypervisor.Hypervisor, spec hypervisor.Spec) (time.Time, error) {
			return guestNow(env, spec)
		},
		Timeout: 60 * time.Second,
	})
}

// guestNow reads the example unikernel's clock from its /.jitsu/now
// (examples/unikernel/README.md), at the address of spec's ip=.
func guestNow(env *testenv.Env, spec hypervisor.Spec) (time.Time, error) {
	var ip string
	for _, f := range strings.Fields(spec.Cmdline) {
		if v, ok := strings.CutPrefix(f, "ip="); ok {
			ip, _, _ = strings.Cut(v, ":")
		}
	}
	if ip == "" {
		return time.Time{}, fmt.Errorf("no ip= in the command line %q", spec.Cmdline)
	}
	client := env.HTTPClient()
	client.Timeout = 2 * time.Second
	resp, err := client.Get("http://" + ip + "/.jitsu/now")
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	var now struct {
		UnixNano int64  `json:"unix_nano"`
		Random   string `json:"random"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&now); err != nil || resp.StatusCode != http.StatusOK {
		return time.Time{}, fmt.Errorf("GET /.jitsu/now: status %s, decode: %v", resp.Status, err)
	}
	if len(now.Random) != 32 {
		return time.Time{}, fmt.Errorf("GET /.jitsu/now: random %q, want 32 hex digits", now.Random)
	}
	return time.Unix(0, now.UnixNano), nil
}

// defineForeign defines (without starting) a domain that has no jitsu
// metadata, as an administrator would.
func defineForeign(t *testing.T, env *testenv.Env, img testenv.Image) string {
	t.Helper()
	c, err := lv.NewConnect(env.URI)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close()
	const name = "foreign-admin-vm"
	x := fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory>
<os><type>hvm</type><kernel>%s</kernel></os></domain>`, name, img.Kernel)
	d, err := c.DomainDefineXML(x)
	if err != nil {
		t.Fatalf("define foreign domain: %v", err)
	}
	_ = d.Free()
	t.Cleanup(func() {
		c, err := lv.NewConnect(env.URI)
		if err != nil {
			t.Errorf("connect: %v", err)
			return
		}
		defer c.Close()
		if d, err := c.LookupDomainByName(name); err == nil {
			if err := d.Undefine(); err != nil {
				t.Errorf("undefine foreign domain: %v", err)
			}
			_ = d.Free()
		}
	})
	return name
}

// waitHTTP fetches http://ip/ from inside the namespace until it answers.
func waitHTTP(t *testing.T, env *testenv.Env, ip string, timeout time.Duration) string {
	t.Helper()
	client := env.HTTPClient()
	client.Timeout = 500 * time.Millisecond
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + ip + "/")
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return string(b)
			}
			err = fmt.Errorf("status %s, read: %v", resp.Status, rerr)
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("GET http://%s/ from %s: no answer within %v: %v", ip, env.NS, timeout, lastErr)
	return ""
}

// noHTTP checks that the guest does not answer (it is paused or gone).
func noHTTP(t *testing.T, env *testenv.Env, ip string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c, err := env.DialContext(ctx, "tcp", net.JoinHostPort(ip, "80"))
	if err == nil {
		c.Close()
		t.Fatalf("%s:80 accepted a connection, want no answer", ip)
	}
}

type recorder struct {
	t      *testing.T
	events <-chan hypervisor.Event
	seen   []hypervisor.Event
}

// next waits for the next event of name and checks its kind.
func (r *recorder) next(name string, want hypervisor.EventKind) hypervisor.Event {
	r.t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev, ok := <-r.events:
			if !ok {
				r.t.Fatal("events channel closed")
			}
			if ev.Name != name {
				continue
			}
			r.seen = append(r.seen, ev)
			if ev.Kind != want {
				r.t.Fatalf("event %s(%s), want %s; so far %v", ev.Kind, ev.Detail, want, r.seen)
			}
			return ev
		case <-timeout:
			r.t.Fatalf("no %s event for %q within 60s; so far %v", want, name, r.seen)
		}
	}
}

func wantState(t *testing.T, hv hypervisor.Hypervisor, name string, want hypervisor.State) {
	t.Helper()
	st, err := hv.State(context.Background(), name)
	if err != nil || st != want {
		t.Fatalf("State(%q) = %v, %v; want %v", name, st, err, want)
	}
}

// TestLifecycleQEMU boots the example unikernel, fetches its page over HTTP
// from inside the namespace, and walks it through every stop mode and a
// crash, checking each lifecycle event as it arrives.
func TestLifecycleQEMU(t *testing.T) {
	env := testenv.Libvirt(t)
	img := testenv.ExampleImage(t)
	dir := consoleDir(t)
	hv := newHypervisor(t, env, dir)
	ctx := context.Background()
	const name = "lifecycle"
	spec := exampleSpec(img, name, guestIP)
	rec := &recorder{t: t, events: hv.Events()}
	step := func(what string, f func() error) {
		t.Helper()
		t0 := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %v", what, time.Since(t0))
	}
	boot := func(detail string) {
		t.Helper()
		t0 := time.Now()
		step("start", func() error { return hv.Start(ctx, spec) })
		if ev := rec.next(name, hypervisor.EventStarted); ev.Detail != detail {
			t.Errorf("started detail %q, want %q", ev.Detail, detail)
		}
		body := waitHTTP(t, env, guestIP, 60*time.Second)
		t.Logf("HTTP answer %v after start (%d bytes)", time.Since(t0), len(body))
		if body == "" {
			t.Error("empty page")
		}
	}

	boot("booted")
	log, err := os.ReadFile(hv.ConsolePath(name))
	if err != nil || !strings.Contains(string(log), "JITSU-READY") {
		t.Errorf("console log %s: %v, want JITSU-READY in %q", hv.ConsolePath(name), err, tail(log))
	}
	if st, err := hv.InterfaceStats(ctx, name); err != nil || st.RxPackets == 0 || st.TxPackets == 0 {
		t.Errorf("InterfaceStats = %+v, %v; want traffic both ways after an HTTP exchange", st, err)
	}

	// suspend / resume
	step("suspend", func() error { return hv.Stop(ctx, name, hypervisor.StopSuspend) })
	rec.next(name, hypervisor.EventSuspended)
	wantState(t, hv, name, hypervisor.StatePaused)
	noHTTP(t, env, guestIP)
	step("resume", func() error { return hv.Resume(ctx, name) })
	rec.next(name, hypervisor.EventResumed)
	waitHTTP(t, env, guestIP, 10*time.Second)

	// save / restore
	step("save", func() error { return hv.Stop(ctx, name, hypervisor.StopSave) })
	if ev := rec.next(name, hypervisor.EventStopped); ev.Detail != "saved" {
		t.Errorf("stopped detail %q, want saved", ev.Detail)
	}
	wantState(t, hv, name, hypervisor.StateSaved)
	noHTTP(t, env, guestIP)
	t0 := time.Now()
	step("restore", func() error { return hv.Start(ctx, spec) })
	if ev := rec.next(name, hypervisor.EventStarted); ev.Detail != "restored" {
		t.Errorf("started detail %q, want restored", ev.Detail)
	}
	waitHTTP(t, env, guestIP, 30*time.Second)
	t.Logf("HTTP answer %v after restore", time.Since(t0))

	// shutdown (the example kernel has no ACPI: destroyed after the timeout)
	step("shutdown", func() error { return hv.Stop(ctx, name, hypervisor.StopShutdown) })
	ev := rec.next(name, hypervisor.EventStopped)
	t.Logf("shutdown stopped it: %s", ev.Detail)
	wantGone(t, hv, name)

	// destroy
	boot("booted")
	step("destroy", func() error { return hv.Stop(ctx, name, hypervisor.StopDestroy) })
	if ev := rec.next(name, hypervisor.EventStopped); ev.Detail != "destroyed" {
		t.Errorf("stopped detail %q, want destroyed", ev.Detail)
	}
	wantGone(t, hv, name)
	noHTTP(t, env, guestIP)

	// crash: QEMU killed from outside
	boot("booted")
	killed := time.Now()
	killQEMU(t, name)
	ev = rec.next(name, hypervisor.EventCrashed)
	t.Logf("crashed event (%s) %v after kill -9 of QEMU", ev.Detail, ev.Time.Sub(killed))
	wantGone(t, hv, name)
	t.Logf("events: %v", rec.seen)
}

// TestPanicIsCrash makes the guest kernel panic (init= a file that does not
// exist, panic=-1 reboots) and expects a crashed event.
func TestPanicIsCrash(t *testing.T) {
	env := testenv.Libvirt(t)
	img := testenv.ExampleImage(t)
	hv := newHypervisor(t, env, consoleDir(t))
	spec := exampleSpec(img, "panic", guestIP)
	spec.Cmdline += " rdinit=/nonexistent init=/nonexistent panic=-1"
	t0 := time.Now()
	if err := hv.Start(context.Background(), spec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	rec := &recorder{t: t, events: hv.Events()}
	rec.next("panic", hypervisor.EventStarted)
	ev := rec.next("panic", hypervisor.EventCrashed)
	t.Logf("crashed (%s) %v after start", ev.Detail, time.Since(t0))
}

// wantGone checks that a stopped domain is shut off or no longer exists.
func wantGone(t *testing.T, hv hypervisor.Hypervisor, name string) {
	t.Helper()
	st, err := hv.State(context.Background(), name)
	if errors.Is(err, hypervisor.ErrNotFound) || (err == nil && (st == hypervisor.StateShutoff || st == hypervisor.StateCrashed)) {
		return
	}
	t.Fatalf("State(%q) = %v, %v; want shutoff, crashed or not found", name, st, err)
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// TestReconnect restarts libvirtd under a running domain: calls during the
// outage fail with ErrUnavailable, the backend reconnects by itself, adopts
// the domain (QEMU survives a libvirtd restart) and gets its events again.
func TestReconnect(t *testing.T) {
	env := testenv.Libvirt(t)
	img := testenv.ExampleImage(t)
	hv, err := libvirt.New(context.Background(), libvirt.Options{
		URI: env.URI, Logger: zaptest.NewLogger(t), ConsoleDir: consoleDir(t), ShutdownTimeout: 3 * time.Second,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = hv.Close() })
	ctx := context.Background()
	const name = "reconnect"
	rec := &recorder{t: t, events: hv.Events()}
	if err := hv.Start(ctx, exampleSpec(img, name, guestIP)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	rec.next(name, hypervisor.EventStarted)

	if err := env.StopLibvirtd(); err != nil {
		t.Fatalf("stop libvirtd: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := hv.State(ctx, name)
		if errors.Is(err, hypervisor.ErrUnavailable) {
			t.Logf("during the outage: %v", err)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("State with libvirtd stopped: %v, want ErrUnavailable", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	restarted := time.Now()
	if err := env.StartLibvirtd(ctx); err != nil {
		t.Fatalf("restart libvirtd: %v", err)
	}
	for {
		st, err := hv.State(ctx, name)
		if err == nil {
			if st != hypervisor.StateRunning {
				t.Fatalf("after reconnect: state %v, want running", st)
			}
			t.Logf("reconnected %v after libvirtd came back", time.Since(restarted))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect within 30 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitHTTP(t, env, guestIP, 30*time.Second)
	if err := hv.Stop(ctx, name, hypervisor.StopDestroy); err != nil {
		t.Fatalf("Stop after reconnect: %v", err)
	}
	rec.next(name, hypervisor.EventStopped)
}
