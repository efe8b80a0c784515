package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/bench/internal/benchkit"
	"github.com/jitsu-unikernel/jitsu/control"
	"github.com/jitsu-unikernel/jitsu/internal/sandbox"
)

const (
	dnsAddr    = "127.0.0.1:5353"
	staticName = "static.example.test."
	// firstHost is the last octet of the first guest's address in the
	// sandbox's /24 (10.213.0.0/24; .1 is the bridge).
	firstHost = 10
	maxGuests = 254 - firstHost

	domainPrefix   = benchkit.DomainPrefix
	imageExample   = "example"
	imageMultiboot = "multiboot"
)

// guest is one configured unikernel.
type guest struct {
	name string // in the config, e.g. u007
	fqdn string
	ip   string
}

// bench is the state of one run.
type bench struct {
	o        options
	host     *benchkit.Host
	conf     string
	socket   string
	guests   []guest
	up       int // guests brought up so far (the first up of guests)
	total    time.Duration
	jitsuPid int
}

func newBench(host *benchkit.Host, o options) (*bench, error) {
	if o.m > maxGuests {
		return nil, fmt.Errorf("-m %d: the sandbox's /24 holds at most %d guests", o.m, maxGuests)
	}
	b := &bench{o: o, host: host, conf: filepath.Join(host.Dir, "jitsu.toml"), socket: filepath.Join(host.Dir, "control.sock")}
	c := sandbox.JitsuConfig{
		SynProxy: o.synproxy, ResponseDelay: "0s", ConsoleDir: host.Dir, Socket: b.socket,
		Image: host.Image, DomainType: o.domainType, Extra: limits(o.m),
		GuestCPUWeight: o.guestCPUWeight,
	}
	for i := range o.m {
		g := guest{name: fmt.Sprintf("u%03d", i+1), ip: fmt.Sprintf("10.213.0.%d", firstHost+i)}
		g.fqdn = g.name + ".example.test."
		b.guests = append(b.guests, g)
		u := sandbox.JitsuUnikernel{Name: g.name, IP: g.ip, IdleTimeout: "0s", BootTimeout: o.bootTimeout.String()}
		if o.image == imageMultiboot {
			u.Kernel, u.Ready = sandbox.MultibootKernel, "console:JITSU-READY"
		}
		c.Unikernels = append(c.Unikernels, u)
	}
	if err := c.Write(b.conf); err != nil {
		return nil, err
	}
	return b, nil
}

// limits is the [budget] and [admission] of the config, set explicitly:
// every guest may run at once (no eviction), and admission, whose
// defaults pace boots from one source to one per 5 s, lets every boot the
// benchmark asks for through (the benchmark paces them itself).
func limits(m int) string {
	return fmt.Sprintf(`
[budget]
max_running = %d
memory = "%dMiB"

[admission]
boot_rate = 1000
boot_burst = %d
prefix_rate = 1000
prefix_burst = %d
`, m, m*64, m, m)
}

// startJitsu starts jitsu serve in the namespace and waits until it
// answers on its control socket and for a static name; the returned
// function stops it with SIGTERM (SIGKILL after 30 s).
func (b *bench) startJitsu(ctx context.Context) (func() error, error) {
	logf, err := os.Create(b.o.jitsuLog)
	if err != nil {
		return nil, err
	}
	// nsenter --net, not ip netns exec: jitsu must see the host's
	// /sys/fs/cgroup to give the guests their CPU weight, as it does on a
	// real host.
	cmd := b.host.Env.CommandNet(context.Background(), b.o.bin, "serve", "--config", b.conf, "--log-json")
	stop, err := benchkit.StartLogged("jitsu", cmd, logf, 30*time.Second)
	if err != nil {
		return nil, err
	}
	// nsenter execs jitsu in its own process.
	b.jitsuPid = cmd.Process.Pid
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, serr := b.status(ctx)
		if serr == nil {
			_, serr = b.queryOnce(staticName)
		}
		if serr == nil {
			return stop, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, errors.Join(fmt.Errorf("jitsu not ready: %w (log %s)", serr, b.o.jitsuLog), ctx.Err(), stop())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// status returns jitsu's view of every unikernel.
func (b *bench) status(ctx context.Context) ([]control.UnikernelStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := control.Dial(ctx, b.socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Status(ctx)
}

// queryOnce asks jitsu for name's A record from the namespace.
func (b *bench) queryOnce(name string) (net.IP, error) {
	var ip net.IP
	err := b.host.Env.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		resp, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, dnsAddr)
		if err != nil {
			return err
		}
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
			return fmt.Errorf("answer for %s: %v", name, resp)
		}
		a, ok := resp.Answer[0].(*dns.A)
		if !ok {
			return fmt.Errorf("answer for %s: %v is not an A record", name, resp.Answer[0])
		}
		ip = a.A
		return nil
	})
	return ip, err
}

// bringUp brings guests [b.up, n) up as clients would, at most
// o.parallel at a time, within o.stepTimeout; it returns the step's time
// and the slowest guest's.
func (b *bench) bringUp(ctx context.Context, n int) (step, slowest time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, b.o.stepTimeout)
	defer cancel()
	start := time.Now()
	todo := make(chan guest)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range b.o.parallel {
		wg.Go(func() {
			for g := range todo {
				d, err := b.visit(ctx, g)
				mu.Lock()
				slowest = max(slowest, d)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", g.name, err))
				}
				mu.Unlock()
				if err != nil {
					cancel() // the step failed: stop the others
				}
			}
		})
	}
feed:
	for _, g := range b.guests[b.up:n] {
		select {
		case todo <- g:
		case <-ctx.Done():
			break feed
		}
	}
	close(todo)
	wg.Wait()
	step = time.Since(start)
	if len(errs) == 0 && ctx.Err() != nil {
		errs = append(errs, fmt.Errorf("not up within %v: %w", b.o.stepTimeout, ctx.Err()))
	}
	if len(errs) > 0 {
		return step, slowest, errs[0]
	}
	b.up = n
	b.total += step
	return step, slowest, nil
}

// visit does what a client of g does: a DNS query, then an HTTP GET of
// the address answered until it is answered (a refused or timed-out
// connect is retried); it returns the time from the query to the first
// byte.
func (b *bench) visit(ctx context.Context, g guest) (time.Duration, error) {
	start := time.Now()
	ip, err := b.queryOnce(g.fqdn)
	if err != nil {
		return 0, fmt.Errorf("query: %w", err)
	}
	if ip.String() != g.ip {
		return 0, fmt.Errorf("query answered %s, want %s", ip, g.ip)
	}
	if b.o.image == imageMultiboot {
		return b.waitReady(ctx, g, start)
	}
	addr := net.JoinHostPort(g.ip, "80")
	for {
		gctx, gcancel := context.WithTimeout(ctx, 30*time.Second)
		first, err := benchkit.FirstByte(gctx, b.host.Env.DialContext, addr, 30*time.Second)
		gcancel()
		if err == nil {
			return first.Sub(start), nil
		}
		if ctx.Err() != nil {
			return time.Since(start), fmt.Errorf("GET %s: %w (last: %v)", addr, ctx.Err(), err)
		}
		log.Printf("  %s: GET %s: %v (retrying)", g.name, addr, err)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitReady waits until jitsu reports g ready (a guest without HTTP) and
// returns the time since start.
func (b *bench) waitReady(ctx context.Context, g guest, start time.Time) (time.Duration, error) {
	for {
		sts, err := b.status(ctx)
		if err != nil {
			return time.Since(start), fmt.Errorf("status: %w", err)
		}
		for _, s := range sts {
			if s.Name == g.name && s.State == "ready" {
				return time.Since(start), nil
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return time.Since(start), fmt.Errorf("not ready: %w", err)
		}
	}
}
