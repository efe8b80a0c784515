package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/bench/internal/benchkit"
)

// dnsTimeout is how long a query waits for its answer; a query not
// answered by then counts as lost, with this latency.
const dnsTimeout = time.Second

// latencies is a DNS latency sample.
type latencies struct {
	d    []time.Duration
	lost int
}

// pct returns the p-th percentile (nearest rank), 0 for no sample.
func (l latencies) pct(p float64) time.Duration {
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// dnsLoad queries jitsu from one UDP socket in the namespace at rate
// queries per second, alternating the static name and the running
// unikernels' names (one after the other), q queries of each, one at a
// time; it returns the latencies of each.
func (b *bench) dnsLoad(ctx context.Context, names []string, q int, rate float64) (static, uk latencies, err error) {
	var conn net.Conn
	if err := b.host.Env.Do(func() error {
		var err error
		conn, err = net.Dial("udp", dnsAddr)
		return err
	}); err != nil {
		return static, uk, fmt.Errorf("DNS client socket: %w", err)
	}
	defer conn.Close()
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	buf := make([]byte, 1500)
	for i := range 2 * q {
		if ctx.Err() != nil {
			return static, uk, ctx.Err()
		}
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		name, into := staticName, &static
		if i%2 == 1 {
			name, into = names[(i/2)%len(names)], &uk
		}
		d, err := exchange(conn, buf, name, uint16(i))
		if err != nil {
			into.lost++
			d = dnsTimeout
		}
		into.d = append(into.d, d)
	}
	return static, uk, nil
}

// exchange sends one A query for name with id and waits for its answer
// (an answer of an earlier, late query is skipped).
func exchange(conn net.Conn, buf []byte, name string, id uint16) (time.Duration, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.Id = id
	wire, err := m.Pack()
	if err != nil {
		return 0, err
	}
	sent := time.Now()
	_ = conn.SetDeadline(sent.Add(dnsTimeout))
	if _, err := conn.Write(wire); err != nil {
		return 0, err
	}
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return 0, err
		}
		var r dns.Msg
		if r.Unpack(buf[:n]) != nil || r.Id != id {
			continue
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			return 0, fmt.Errorf("answer for %s: rcode %s, %d records", name, dns.RcodeToString[r.Rcode], len(r.Answer))
		}
		return time.Since(sent), nil
	}
}

// httpAll GETs every running guest, 8 at a time (with -image multiboot:
// checks that jitsu reports each ready); it returns how many
// answered, the slowest answer, and the first failure.
func (b *bench) httpAll(ctx context.Context) (ok int, slowest time.Duration, err error) {
	if b.o.image == imageMultiboot {
		// No HTTP: every guest ready in jitsu's view instead.
		if err := b.checkReady(ctx, b.up); err != nil {
			return 0, 0, err
		}
		return b.up, 0, nil
	}
	var okN atomic.Int64
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, g := range b.guests[:b.up] {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			start := time.Now()
			_, err := benchkit.FirstByte(gctx, b.host.Env.DialContext, net.JoinHostPort(g.ip, "80"), 5*time.Second)
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = fmt.Errorf("GET %s (%s): %w", g.name, g.ip, err)
				}
				return
			}
			okN.Add(1)
			slowest = max(slowest, d)
		})
	}
	wg.Wait()
	return int(okN.Load()), slowest, first
}
