// Command coldstart measures what a user of jitsu feels: the time from a DNS
// query for a stopped unikernel to the first byte of its HTTP answer, with
// the real jitsu binary, a private libvirtd in a network namespace
// (internal/testenv) and the example unikernel under QEMU.
//
// It prints, over -n cold starts each, the median, p90, min and max of:
//
//	(a) jitsu with the SYN proxy: query, then GET at once
//	(b) jitsu without the SYN proxy: query, then GET at once; the client's
//	    SYN meets a guest that is not up yet (lost, or answered RST), and a
//	    refused connect is retried at once, as a browser's reload would
//	(b') jitsu without the SYN proxy but with Jitsu's response delay: the
//	    DNS answer itself waits until the unikernel is ready
//	(c) the boot floor: hypervisor start call to the first HTTP answer,
//	    probed every 5 ms, without jitsu
//
// It needs root and `make build image`. Usage:
//
//	coldstart [-n 10] [-jitsu bin/jitsu] [-domain-type qemu|kvm]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/control"
	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/hypervisor/libvirt"
	"github.com/jitsu-unikernel/jitsu/internal/testenv"
)

// domainType is the libvirt domain type of every boot (-domain-type).
var domainType = "qemu"

const (
	guestIP = "10.213.0.5"
	name    = "www.example.test."
)

func main() {
	n := flag.Int("n", 10, "cold starts per case")
	bin := flag.String("jitsu", "bin/jitsu", "the jitsu binary")
	flag.StringVar(&domainType, "domain-type", "qemu", "libvirt domain type: qemu (TCG) or kvm")
	flag.Parse()
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *n, *bin)
	stop()
	if err != nil {
		log.Printf("coldstart: %v", err)
		os.Exit(1)
	}
}

// result is one case's samples, or its failures.
type result struct {
	label   string
	samples []time.Duration
	retries int // refused connects retried, case (b)
}

func run(ctx context.Context, n int, bin string) (err error) {
	bin, err = filepath.Abs(bin)
	if err != nil {
		return err
	}
	img, err := testenv.FindExampleImage()
	if err != nil {
		return err
	}
	env, err := testenv.StartLibvirt(ctx, func(f string, a ...any) { log.Printf("env: "+f, a...) })
	if err != nil {
		return fmt.Errorf("start environment: %w", err)
	}
	defer func() { err = errors.Join(err, env.Close()) }()
	dir, err := os.MkdirTemp("/var/lib/jitsu", "coldstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	base := testenv.JitsuConfig{
		ConsoleDir: dir, Socket: filepath.Join(dir, "control.sock"), Image: img, DomainType: domainType,
		Unikernels: []testenv.JitsuUnikernel{{Name: "www", IP: guestIP, IdleTimeout: "0s"}},
	}

	var results []result
	cases := []struct {
		label string
		data  func(testenv.JitsuConfig) testenv.JitsuConfig
	}{
		{"(a) jitsu with the SYN proxy", func(c testenv.JitsuConfig) testenv.JitsuConfig { c.SynProxy, c.ResponseDelay = true, "0s"; return c }},
		{"(b) jitsu without the SYN proxy", func(c testenv.JitsuConfig) testenv.JitsuConfig { c.SynProxy, c.ResponseDelay = false, "0s"; return c }},
		{"(b') no SYN proxy, response delay", func(c testenv.JitsuConfig) testenv.JitsuConfig { c.SynProxy, c.ResponseDelay = false, "10s"; return c }},
	}
	for _, c := range cases {
		r, err := measureJitsu(ctx, env, bin, c.data(base), n)
		if err != nil {
			return fmt.Errorf("%s: %w", c.label, err)
		}
		r.label = c.label
		results = append(results, r)
	}
	floor, err := measureFloor(ctx, env, img, dir, n)
	if err != nil {
		return fmt.Errorf("boot floor: %w", err)
	}
	floor.label = "(c) boot floor (start call to HTTP)"
	results = append(results, floor)

	fmt.Printf("\ncold start, DNS query to first HTTP byte, %d runs each (domain type %s, %s)\n", n, domainType, img.BootKernel())
	fmt.Printf("%-38s %9s %9s %9s %9s  %s\n", "case", "median", "p90", "min", "max", "notes")
	for _, r := range results {
		note := ""
		if r.retries > 0 {
			note = fmt.Sprintf("%d refused connects retried", r.retries)
		}
		fmt.Printf("%-38s %9s %9s %9s %9s  %s\n", r.label, ms(pct(r.samples, 50)), ms(pct(r.samples, 90)),
			ms(slices.Min(r.samples)), ms(slices.Max(r.samples)), note)
	}
	a, c := pct(results[0].samples, 50), pct(floor.samples, 50)
	fmt.Printf("\n(a) - (c), medians: %s (goal: within 20 ms)\n", ms(a-c))
	return nil
}

// measureJitsu runs jitsu with data's config and times n cold starts.
func measureJitsu(ctx context.Context, env *testenv.Env, bin string, data testenv.JitsuConfig, n int) (result, error) {
	conf := filepath.Join(data.ConsoleDir, "jitsu.toml")
	if err := data.Write(conf); err != nil {
		return result{}, err
	}
	logf, err := os.Create(filepath.Join(data.ConsoleDir, "jitsu.log"))
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd := env.Command(ctx, bin, "serve", "--config", conf, "--log-json")
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("start jitsu: %w", err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	if err := waitControl(ctx, data.Socket); err != nil {
		return result{}, err
	}
	var r result
	for i := 0; i < n; i++ {
		if err := stopDomain(ctx, data.Socket); err != nil {
			return r, err
		}
		d, retries, err := coldRequest(ctx, env)
		if err != nil {
			return r, fmt.Errorf("run %d: %w", i, err)
		}
		r.samples = append(r.samples, d)
		r.retries += retries
		log.Printf("  synproxy=%v delay=%s run %d: %s%s", data.SynProxy, data.ResponseDelay, i, ms(d), timeline(ctx, data.Socket))
	}
	return r, nil
}

// coldRequest queries the name and GETs the page at once, retrying a
// refused connect at once; it returns the time from the query to the
// first byte of the answer.
func coldRequest(ctx context.Context, env *testenv.Env) (time.Duration, int, error) {
	start := time.Now()
	var addr string
	err := env.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		resp, _, err := (&dns.Client{Timeout: 15 * time.Second}).Exchange(m, "127.0.0.1:5353")
		if err != nil {
			return err
		}
		if len(resp.Answer) != 1 {
			return fmt.Errorf("answer %v", resp)
		}
		addr = resp.Answer[0].(*dns.A).A.String()
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("query: %w", err)
	}
	retries := 0
	for {
		first, err := firstByte(ctx, env, addr, 30*time.Second)
		if err == nil {
			return first.Sub(start), retries, nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EHOSTUNREACH) || time.Since(start) > time.Minute {
			return 0, retries, err
		}
		retries++
	}
}

// firstByte GETs http://addr/ from inside the namespace and returns when
// the first byte of the response arrived.
func firstByte(ctx context.Context, env *testenv.Env, addr string, timeout time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var first time.Time
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := env.HTTPClient().Do(req)
	if err != nil {
		return time.Time{}, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return time.Time{}, fmt.Errorf("GET: %s", resp.Status)
	}
	return first, nil
}

// stopDomain stops www through the control socket and waits until jitsu
// reports it stopped, then lets the host settle.
func stopDomain(ctx context.Context, socket string) error {
	c, err := control.Dial(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()
	sts, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if len(sts) == 1 && sts[0].State != "stopped" {
		if err := c.Stop(ctx, "www", "destroy"); err != nil {
			return fmt.Errorf("stop www: %w", err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		sts, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if sts[0].State == "stopped" {
			time.Sleep(500 * time.Millisecond)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("www still %s after stop", sts[0].State)
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
	out := fmt.Sprintf(" (query→start %s, start→ready %s", ms(tl.Start.Sub(tl.Query)), ms(tl.Ready.Sub(tl.Start)))
	if !tl.FirstReplay.IsZero() {
		out += fmt.Sprintf(", ready→replay %s", ms(tl.FirstReplay.Sub(tl.Ready)))
	}
	return out + ")"
}

// waitControl waits until jitsu's control socket answers.
func waitControl(ctx context.Context, socket string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := control.Dial(ctx, socket)
		if err == nil {
			_, err = c.Status(ctx)
			c.Close()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("jitsu did not answer on %s: %w", socket, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// measureFloor boots the image n times through hypervisor/libvirt, with
// the Spec jitsu would use, and times the start call to the first HTTP
// answer, probed every 5 ms.
func measureFloor(ctx context.Context, env *testenv.Env, img testenv.Image, dir string, n int) (result, error) {
	hv, err := libvirt.New(ctx, libvirt.Options{URI: env.URI, ConsoleDir: dir, ShutdownTimeout: config.DefaultShutdownTimeout})
	if err != nil {
		return result{}, err
	}
	defer hv.Close()
	spec := hypervisor.Spec{
		Name: "jitsu-floor", Kernel: img.BootKernel(), Initrd: img.Initrd,
		Cmdline:     img.Cmdline + " ip=" + guestIP + "::10.213.0.1:255.255.255.0::eth0:off",
		MemoryBytes: 64 << 20, Bridge: env.Bridge, DomainType: domainType,
	}
	spec.MAC = hypervisor.DeriveMAC(spec.Name)
	if err := env.PinNeighbour(ctx, []byte{10, 213, 0, 5}, spec.MAC); err != nil {
		return result{}, err
	}
	var r result
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := hv.Start(ctx, spec); err != nil {
			return r, err
		}
		first, err := probeFirstByte(ctx, env, guestIP, time.Minute)
		if err != nil {
			return r, fmt.Errorf("floor run %d: %w", i, err)
		}
		r.samples = append(r.samples, first.Sub(start))
		log.Printf("  floor run %d: %s", i, ms(first.Sub(start)))
		if err := hv.Stop(ctx, spec.Name, hypervisor.StopDestroy); err != nil {
			return r, err
		}
		time.Sleep(500 * time.Millisecond)
	}
	return r, nil
}

// probeFirstByte starts a GET every 5 ms (at most 4 at a time, as jitsu's own probe), without waiting for earlier ones
// (a SYN sent before the guest's network is up is lost, and its
// retransmission would come a second later), and returns the first byte
// of the first one answered.
func probeFirstByte(ctx context.Context, env *testenv.Env, addr string, limit time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	won := make(chan time.Time, 1)
	slots := make(chan struct{}, 4)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case t := <-won:
			return t, nil
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case slots <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if t, err := firstByte(ctx, env, addr, 250*time.Millisecond); err == nil {
				select {
				case won <- t:
				default:
				}
			}
		}()
		select {
		case t := <-won:
			return t, nil
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-tick.C:
		}
	}
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
