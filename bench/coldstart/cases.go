package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
	start := time.Now()
	if err := b.hv.Start(ctx, b.spec); err != nil {
		return sample{}, err
	}
	first, err := benchkit.Probe(ctx, b.env.DialContext, net.JoinHostPort(guestIP, "80"), 5*time.Millisecond)
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
// it answers, lets cl do one cold start, stops the unikernel and jitsu.
func jitsuSample(cl client) func(ctx context.Context, b *bench, c *benchCase) (sample, error) {
	return func(ctx context.Context, b *bench, c *benchCase) (s sample, err error) {
		stop, err := b.startJitsu(ctx, c)
		if err != nil {
			return s, err
		}
		defer func() { err = errors.Join(err, stop()) }()
		s.d, s.retries, err = cl(ctx, b)
		if err != nil {
			return s, err
		}
		s.note = timeline(ctx, b.socket)
		return s, stopDomain(ctx, b.socket)
	}
}

// queryThenGet asks jitsu for the name and GETs its address at once,
// retrying a refused connect at once (as a browser's reload would).
func queryThenGet(ctx context.Context, b *bench) (time.Duration, int, error) {
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
	return getFrom(ctx, b, start, addr)
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
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start jitsu: %w", err)
	}
	stop := func() error {
		defer logf.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("jitsu exit after SIGTERM: %w (log %s)", err, logf.Name())
			}
			return nil
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("jitsu did not stop within 15 s of SIGTERM")
		}
	}
	if err := b.waitJitsu(ctx, cmd); err != nil {
		return nil, errors.Join(err, stop())
	}
	return stop, nil
}

// waitJitsu waits until jitsu's control socket answers with www stopped
// and its DNS server answers a static name.
func (b *bench) waitJitsu(ctx context.Context, cmd *exec.Cmd) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		last = b.jitsuAnswers(ctx)
		if last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("jitsu (pid %d) not ready after 30 s: %w", cmd.Process.Pid, last)
}

func (b *bench) jitsuAnswers(ctx context.Context) error {
	c, err := control.Dial(ctx, b.socket)
	if err != nil {
		return err
	}
	sts, err := c.Status(ctx)
	c.Close()
	if err != nil {
		return err
	}
	if len(sts) != 1 || sts[0].State != "stopped" {
		return fmt.Errorf("status %+v, want www stopped", sts)
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

// stopDomain stops www through the control socket, waits until jitsu
// reports it stopped, then lets the host settle.
func stopDomain(ctx context.Context, socket string) error {
	c, err := control.Dial(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Stop(ctx, "www", "destroy"); err != nil {
		return fmt.Errorf("stop www: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		sts, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if len(sts) == 1 && sts[0].State == "stopped" {
			time.Sleep(settle)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("www still %v after stop", sts)
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
	out := fmt.Sprintf(" (query→start %s, start→ready %s", benchkit.MS(tl.Start.Sub(tl.Query)), benchkit.MS(tl.Ready.Sub(tl.Start)))
	if !tl.FirstReplay.IsZero() {
		out += fmt.Sprintf(", ready→replay %s", benchkit.MS(tl.FirstReplay.Sub(tl.Ready)))
	}
	return out + ")"
}
