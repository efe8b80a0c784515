// Package benchkit holds what the boot benchmarks (bench/coldstart,
// bench/bootfloor, bench/frontdoor) share, so that they measure the same
// thing the same way: the sandboxed host they boot on and its work
// directory, the domain jitsu would boot for a unikernel of a config, the
// HTTP first-byte probe, and the summary statistics.
package benchkit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// DomainPrefix is the prefix jitsu gives its domains' names.
const DomainPrefix = "jitsu-"

// Spec returns the hypervisor.Spec jitsu boots for the unikernel name of
// cfg, field for field as jitsu serve builds it, so that a benchmark
// booting it without jitsu boots the same domain.
func Spec(cfg *config.Config, name string) (hypervisor.Spec, error) {
	u := cfg.Unikernel(name)
	if u == nil {
		return hypervisor.Spec{}, fmt.Errorf("no unikernel %q in the config", name)
	}
	dom := DomainPrefix + u.Name
	mac := u.MAC
	if len(mac) == 0 {
		mac = hypervisor.DeriveMAC(dom)
	}
	return hypervisor.Spec{
		Name:        dom,
		Kernel:      u.Kernel,
		Initrd:      u.Initrd,
		Cmdline:     u.Cmdline,
		Disks:       u.Disks,
		MemoryBytes: u.Memory,
		VCPUs:       u.VCPUs,
		Bridge:      cfg.Network.Bridge,
		MAC:         mac,
		DomainType:  cfg.Hypervisor.DomainType,
		ConsoleLog:  filepath.Join(cfg.Hypervisor.ConsoleDir, dom+".log"),
	}, nil
}

// DialFunc dials a connection, e.g. from inside a namespace.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// FirstByte sends GET / over a new connection to addr (host:port) and
// returns when the first byte of the answer arrived; the answer must be an
// HTTP 200. The connect is given up after connectTimeout.
func FirstByte(ctx context.Context, dial DialFunc, addr string, connectTimeout time.Duration) (time.Time, error) {
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	conn, err := dial(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		return time.Time{}, fmt.Errorf("send GET: %w", err)
	}
	var b [12]byte
	if _, err := io.ReadFull(conn, b[:1]); err != nil {
		return time.Time{}, fmt.Errorf("read answer: %w", err)
	}
	first := time.Now()
	if _, err := io.ReadFull(conn, b[1:]); err != nil {
		return time.Time{}, fmt.Errorf("read answer: %w", err)
	}
	if !bytes.HasPrefix(b[:], []byte("HTTP/1.")) || !bytes.HasSuffix(b[:], []byte(" 200")) {
		return time.Time{}, fmt.Errorf("answer %q, want HTTP 200", b[:])
	}
	_, _ = io.Copy(io.Discard, conn)
	return first, nil
}

// Probe starts a FirstByte every interval, at most 4 at a time as jitsu's
// own readiness probe (a guest without SYN cookies drops every SYN once
// its listen backlog is full of half-open probes), each giving up its
// connect after 250 ms (a SYN sent before the guest's network is up is
// lost, and its retransmission would come a second later); it returns the
// first byte of the first one answered.
func Probe(ctx context.Context, dial DialFunc, addr string, interval time.Duration) (time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	won := make(chan time.Time, 1)
	slots := make(chan struct{}, 4)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case t := <-won:
			return t, nil
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("no HTTP answer from %s: %w", addr, ctx.Err())
		case slots <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-slots }()
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			defer pcancel()
			if t, err := FirstByte(pctx, dial, addr, 250*time.Millisecond); err == nil {
				select {
				case won <- t:
				default:
				}
			}
		})
		select {
		case t := <-won:
			return t, nil
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("no HTTP answer from %s: %w", addr, ctx.Err())
		case <-tick.C:
		}
	}
}

// Summary is the distribution of a sample.
type Summary struct {
	N                     int
	Median, P90, Min, Max time.Duration
}

// Summarize returns ds's summary; the median of an even count is the mean
// of the middle two, p90 the nearest rank.
func Summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Summary{N: n, Median: med, P90: s[(9*n+9)/10-1], Min: s[0], Max: s[n-1]}
}

// MS formats d in whole milliseconds.
func MS(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}
