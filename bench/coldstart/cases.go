package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/bench/internal/benchkit"
	"github.com/jitsu-unikernel/jitsu/control"
	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// settle is the pause after each sample, so that the next one starts on a
// quiet host.
const settle = 500 * time.Millisecond

// floorSample starts the domain through hypervisor/libvirt, without jitsu,
// and times the start call to the first HTTP byte (probed every 5 ms). The
// guest's neighbour entry is pinned for the boot, as jitsu's SYN proxy
// pins it, and removed again so that the cases without the proxy do not
// profit from it.
func floorSample(ctx context.Context, b *bench, _ *benchCase) (sample, error) {
	if err := b.env.PinNeighbour(ctx, net.ParseIP(guestIP), b.spec.MAC); err != nil {
		return sample{}, err
	}
	defer func() {
		_ = b.env.Command(context.Background(), "ip", "neigh", "del", guestIP, "dev", b.env.Bridge).Run()
	}()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := b.clearMarker(); err != nil {
		return sample{}, err
	}
	start := time.Now()
	if err := b.hv.Start(ctx, b.spec); err != nil {
		return sample{}, err
	}
	var first time.Time
	var err error
	if b.multiboot {
		first, err = waitMarker(ctx, b.hv.ConsolePath(b.spec.Name))
	} else {
		first, err = benchkit.Probe(ctx, b.env.DialContext, net.JoinHostPort(guestIP, "80"), 5*time.Millisecond)
	}
	if serr := b.hv.Stop(context.Background(), b.spec.Name, hypervisor.StopDestroy); serr != nil {
		err = errors.Join(err, serr)
	}
	time.Sleep(settle)
	if err != nil {
		return sample{}, err
	}
	return sample{d: first.Sub(start)}, nil
}

// client is what a jitsu case's client does from the moment it starts;
// it returns the time to the first byte and the refused connects retried.
type client func(ctx context.Context, b *bench) (time.Duration, int, error)

// jitsuSample runs a fresh jitsu serve with the case's config, waits until
// it answers with the unikernel in the case's idle state (after the case's
// prepare, and a settle when the host had work to do to get there),
// records the RSS of the domain's QEMU, lets cl do one cold start, stops
// the unikernel and jitsu, and destroys what jitsu left (a warm domain
// prepared again after the stop).
func jitsuSample(cl client) func(ctx context.Context, b *bench, c *benchCase) (sample, error) {
	return func(ctx context.Context, b *bench, c *benchCase) (s sample, err error) {
		stop, err := b.startJitsu(ctx, c)
		if err != nil {
			return s, errors.Join(err, b.destroyLeft())
		}
		defer func() {
			err = errors.Join(err, stop(), b.destroyLeft())
			time.Sleep(settle)
		}()
		if c.prepare != nil {
			if err := c.prepare(ctx, b); err != nil {
				return s, fmt.Errorf("prepare: %w", err)
			}
		}
		if c.prepare != nil || c.idleState() != "stopped" {
			time.Sleep(settle) // the prepare's boot or create call is over
		}
		if s.rssKiB, err = qemuRSS(b.spec.Name); err != nil {
			return s, err
		}
		s.d, s.retries, err = cl(ctx, b)
		if err != nil {
			return s, err
		}
		s.note = timeline(ctx, b.socket)
		return s, stopDomain(ctx, b.socket, c.idleState())
	}
}

// idleState is the state jitsu reports for the unikernel between
// samples.
func (c *benchCase) idleState() string {
	if c == nil || c.idle == "" {
		return "stopped"
	}
	return c.idle
}

// bootThenStop boots the unikernel once (a query and a GET, not
// measured) and stops it with its own stop mode, as its idle-out would,
// waiting until jitsu reports it in state want.
func bootThenStop(ctx context.Context, b *bench, want string) error {
	if _, _, err := queryThenGet(ctx, b); err != nil {
		return fmt.Errorf("first boot: %w", err)
	}
	c, err := control.Dial(ctx, b.socket)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Stop(ctx, "www", ""); err != nil {
		return fmt.Errorf("stop www: %w", err)
	}
	return waitState(ctx, c, want)
}

// bootAndSuspend boots the unikernel once and suspends it (its stop
// mode).
func bootAndSuspend(ctx context.Context, b *bench) error {
	return bootThenStop(ctx, b, "suspended")
}

// snapshotBytes is the size of the snapshot case's save file (0: none
// made), for the memory report.
var snapshotBytes int64

// bootAndStop makes sure the snapshot case's save file exists (the first
// boot makes the file, later ones restore it) and stops the unikernel:
// its domain is gone, the file stays.
func bootAndStop(ctx context.Context, b *bench) error {
	if err := bootThenStop(ctx, b, "stopped"); err != nil {
		return err
	}
	files := saveFiles(b, "snapshot")
	if len(files) != 1 {
		return fmt.Errorf("save files %q, want one", files)
	}
	if fi, err := os.Stat(files[0]); err == nil {
		snapshotBytes = fi.Size()
	}
	return nil
}

// saveFiles lists the save files of the case whose snapshot_dir is dir
// under the bench directory (one subdirectory per daemon id).
func saveFiles(b *bench, dir string) []string {
	files, _ := filepath.Glob(filepath.Join(b.dir, dir, "*", "*.save"))
	return files
}

// warmSnapStart is the state of the warmsnap case's unikernel when jitsu
// starts: warm once its save file exists, stopped before.
func warmSnapStart(b *bench) string {
	if len(saveFiles(b, "warmsnap")) == 0 {
		return "stopped"
	}
	return "warm"
}

// warmSnapPrepare makes the warmsnap case's save file if it does not
// exist yet (a boot that saves, then a stop, after which jitsu restores
// the file paused into the warm pool).
func warmSnapPrepare(ctx context.Context, b *bench) error {
	if len(saveFiles(b, "warmsnap")) != 0 {
		return nil
	}
	if err := bootThenStop(ctx, b, "warm"); err != nil {
		return err
	}
	if files := saveFiles(b, "warmsnap"); len(files) != 1 {
		return fmt.Errorf("warmsnap save files %q, want one", files)
	}
	return nil
}

// destroyLeft destroys the domain if it is still there once jitsu exited
// (jitsu leaves its domains to the next jitsu: a warm one is prepared
// again after every stop). It uses virsh: the benchmark's own hypervisor
// refuses to touch a domain of jitsu's instance.
func (b *bench) destroyLeft() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", "-c", b.env.URI, "list", "--all", "--name").Output()
	if err != nil {
		return fmt.Errorf("virsh list: %w", err)
	}
	if !slices.Contains(strings.Fields(string(out)), b.spec.Name) {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "virsh", "-c", b.env.URI, "destroy", b.spec.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("destroy the domain jitsu left: virsh destroy: %w: %s", err, out)
	}
	return nil
}

// queryThenGet asks jitsu for the name and GETs its address at once,
// retrying a refused connect at once (as a browser's reload would). For
// the multiboot example it waits for the console marker instead of the
// GET.
func queryThenGet(ctx context.Context, b *bench) (time.Duration, int, error) {
	if err := b.clearMarker(); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	var addr string
	err := b.env.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		resp, _, err := (&dns.Client{Timeout: 15 * time.Second}).Exchange(m, "127.0.0.1:5353")
		if err != nil {
			return err
		}
		if len(resp.Answer) != 1 {
			return fmt.Errorf("answer %v", resp)
		}
		a, ok := resp.Answer[0].(*dns.A)
		if !ok {
			return fmt.Errorf("answer %v is not an A record", resp.Answer[0])
		}
		addr = a.A.String()
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("query: %w", err)
	}
	if b.multiboot {
		first, err := waitMarker(ctx, b.hv.ConsolePath(b.spec.Name))
		return first.Sub(start), 0, err
	}
	return getFrom(ctx, b, start, addr)
}

// marker is what the multiboot example prints on its serial console.
const marker = "JITSU-READY"

// clearMarker empties the domain's console log if it holds the marker of
// an earlier boot (the domain is stopped then: a warm domain's guest has
// not run, so its log holds none), so that waitMarker sees only the next
// one. Nothing to do for the example image.
func (b *bench) clearMarker() error {
	if !b.multiboot {
		return nil
	}
	path := b.hv.ConsolePath(b.spec.Name)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) || err == nil && !strings.Contains(string(data), marker) {
		return nil
	}
	if err == nil {
		err = os.Truncate(path, 0)
	}
	if err != nil {
		return fmt.Errorf("clear the console log of the last boot: %w", err)
	}
	return nil
}

// waitMarker polls the console log at path every 5 ms until it holds the
// marker (at most 2 minutes) and returns when it saw it.
func waitMarker(ctx context.Context, path string) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		if data, err := os.ReadFile(path); err == nil && strings.Contains(string(data), marker) {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("no %s in %s: %w", marker, path, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// getCached GETs the unikernel's address as a client that cached it would,
// with no DNS query: its first SYN summons the unikernel (jitsu's tcp
// trigger) and is held until the unikernel is ready.
func getCached(ctx context.Context, b *bench) (time.Duration, int, error) {
	return getFrom(ctx, b, time.Now(), guestIP)
}

// getFrom GETs http://addr/ until it is answered, retrying refused
// connects, and returns the time from start to the first byte.
func getFrom(ctx context.Context, b *bench, start time.Time, addr string) (time.Duration, int, error) {
	retries := 0
	for {
		gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		first, err := benchkit.FirstByte(gctx, b.env.DialContext, net.JoinHostPort(addr, "80"), 30*time.Second)
		cancel()
		if err == nil {
			return first.Sub(start), retries, nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EHOSTUNREACH) || time.Since(start) > 2*time.Minute {
			return 0, retries, err
		}
		retries++
	}
}

// startJitsu starts jitsu serve with c's config inside the namespace and
// waits until it answers on its control socket and for a static name; the
// returned function stops it with SIGTERM.
func (b *bench) startJitsu(ctx context.Context, c *benchCase) (func() error, error) {
	logf, err := os.OpenFile(filepath.Join(b.dir, c.key+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := b.env.Command(context.Background(), b.bin, "serve", "--config", c.confPath, "--log-json")
	stop, err := benchkit.StartLogged("jitsu", cmd, logf, 15*time.Second)
	if err != nil {
		return nil, err
	}
	want := c.idleState()
	if c.startIdle != nil {
		want = c.startIdle(b)
	}
	if err := b.waitJitsu(ctx, cmd, want); err != nil {
		return nil, errors.Join(err, stop())
	}
	return stop, nil
}

// waitJitsu waits until jitsu's control socket answers with www in state
// want and its DNS server answers a static name.
func (b *bench) waitJitsu(ctx context.Context, cmd *exec.Cmd, want string) error {
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		last = b.jitsuAnswers(ctx, want)
		if last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("jitsu (pid %d) not ready after 60 s: %w", cmd.Process.Pid, last)
}

func (b *bench) jitsuAnswers(ctx context.Context, want string) error {
	c, err := control.Dial(ctx, b.socket)
	if err != nil {
		return err
	}
	sts, err := c.Status(ctx)
	c.Close()
	if err != nil {
		return err
	}
	if len(sts) != 1 || sts[0].State != want {
		return fmt.Errorf("status %+v, want www %s", sts, want)
	}
	return b.env.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion("static.example.test.", dns.TypeA)
		resp, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, "127.0.0.1:5353")
		if err == nil && len(resp.Answer) != 1 {
			err = fmt.Errorf("static answer %v", resp)
		}
		return err
	})
}

// stopDomain destroys www through the control socket and waits until
// jitsu reports it in state idle again (stopped; warm once the pool
// prepared it again).
func stopDomain(ctx context.Context, socket, idle string) error {
	c, err := control.Dial(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Stop(ctx, "www", "destroy"); err != nil {
		return fmt.Errorf("stop www: %w", err)
	}
	return waitState(ctx, c, idle)
}

// waitState waits until jitsu reports www in state want (at most 60 s).
func waitState(ctx context.Context, c *control.Client, want string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		sts, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if len(sts) == 1 && sts[0].State == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("www %v, not %s after 60 s", sts, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// timeline reads the last boot's timeline from jitsu, for the log.
func timeline(ctx context.Context, socket string) string {
	c, err := control.Dial(ctx, socket)
	if err != nil {
		return ""
	}
	defer c.Close()
	sts, err := c.Status(ctx)
	if err != nil || len(sts) != 1 || sts[0].LastBoot == nil {
		return ""
	}
	tl := sts[0].LastBoot
	ready := "not yet" // the client saw its first byte before jitsu's probe
	if !tl.Ready.IsZero() {
		ready = benchkit.MS(tl.Ready.Sub(tl.Start))
	}
	out := fmt.Sprintf(" (mode %s, query→start %s, start→ready %s", tl.Mode, benchkit.MS(tl.Start.Sub(tl.Query)), ready)
	if !tl.FirstReplay.IsZero() {
		out += fmt.Sprintf(", ready→replay %s", benchkit.MS(tl.FirstReplay.Sub(tl.Ready)))
	}
	return out + ")"
}

// qemuRSS returns the resident set size in KiB of the QEMU process of
// domain dom (its -name guest=dom argument), 0 when there is none.
func qemuRSS(dom string) (int, error) {
	pids, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	for _, p := range pids {
		cmdline, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil || !isQEMUOf(strings.Split(string(cmdline), "\x00"), dom) {
			continue // gone meanwhile, or another process
		}
		status, err := os.ReadFile(filepath.Join(p, "status"))
		if err != nil {
			continue
		}
		if kib, err := benchkit.ParseVmRSS(string(status)); err == nil {
			return kib, nil
		}
	}
	return 0, nil
}

// isQEMUOf reports whether args are a QEMU command line for domain dom.
func isQEMUOf(args []string, dom string) bool {
	if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "qemu") {
		return false
	}
	for i, a := range args {
		if a == "-name" && i+1 < len(args) {
			for _, f := range strings.Split(args[i+1], ",") {
				if f == "guest="+dom || f == dom {
					return true
				}
			}
		}
	}
	return false
}
