package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/jitsu-unikernel/jitsu/bench/internal/benchkit"
	"github.com/jitsu-unikernel/jitsu/internal/sandbox"
)

// row is what one step measured.
type row struct {
	n           int
	step, total time.Duration // the step's boots; all boots so far
	slowest     time.Duration // the step's slowest query to first byte
	// medians of the step's boots from jitsu's log: libvirt's create
	// call, and the start call to ready
	create, boot      time.Duration
	cpu               cpuUse
	qemuRSSKiB        int // all QEMU processes
	jitsuRSSKiB       int
	jitsuFDs, virtFDs int
	static, uk        latencies
	httpOK            int
	httpMax           time.Duration
	fail              string // why growth stopped here; "" if the step held
}

// step brings the guests up to n and measures; a row with fail set ends
// the growth.
func (b *bench) step(ctx context.Context, n int) row {
	r := row{n: n}
	from := b.up
	var err error
	r.step, r.slowest, err = b.bringUp(ctx, n)
	r.total = b.total
	stepNames := map[string]bool{}
	for _, g := range b.guests[from:n] {
		stepNames[g.name] = true
	}
	r.create, r.boot = bootTimes(b.o.jitsuLog, stepNames)
	if err != nil {
		r.fail = fmt.Sprintf("not all up: %v", err)
		return r
	}
	if err := b.checkReady(ctx, n); err != nil {
		r.fail = err.Error()
		return r
	}
	log.Printf("  %d up in %.1f s (slowest %s); settling %v, then a quiet window of %v", n, r.step.Seconds(), benchkit.MS(r.slowest), b.o.settle, b.o.quiet)
	if err := b.measureIdle(ctx, &r); err != nil {
		r.fail = err.Error()
		return r
	}
	names := make([]string, b.up)
	for i, g := range b.guests[:b.up] {
		names[i] = g.fqdn
	}
	if r.static, r.uk, err = b.dnsLoad(ctx, names, b.o.dnsQueries, b.o.dnsRate); err != nil {
		r.fail = fmt.Sprintf("DNS load: %v", err)
		return r
	}
	var herr error
	r.httpOK, r.httpMax, herr = b.httpAll(ctx)
	switch {
	case herr != nil:
		r.fail = fmt.Sprintf("%d of %d answered HTTP: %v", r.httpOK, n, herr)
	case r.static.pct(99) >= b.o.p99Limit || r.uk.pct(99) >= b.o.p99Limit:
		r.fail = fmt.Sprintf("DNS p99 %s (static) / %s (unikernel) ≥ %s", msf(r.static.pct(99)), msf(r.uk.pct(99)), msf(b.o.p99Limit))
	}
	return r
}

// checkReady checks that jitsu reports exactly the first n guests ready
// (none evicted, none booted by accident).
func (b *bench) checkReady(ctx context.Context, n int) error {
	sts, err := b.status(ctx)
	if err != nil {
		return fmt.Errorf("jitsu status: %w", err)
	}
	want := map[string]bool{}
	for _, g := range b.guests[:n] {
		want[g.name] = true
	}
	for _, s := range sts {
		if (s.State == "ready") != want[s.Name] {
			return fmt.Errorf("jitsu reports %s %s (last error %q)", s.Name, s.State, s.LastError)
		}
	}
	return nil
}

// measureIdle waits o.settle, then measures CPU over o.quiet and memory
// and open files at its end.
func (b *bench) measureIdle(ctx context.Context, r *row) error {
	if err := sleep(ctx, b.o.settle); err != nil {
		return err
	}
	qemus := make([]int, 0, b.up)
	for _, g := range b.guests[:b.up] {
		p, err := sandbox.QEMUPid(benchkit.DomainPrefix + g.name)
		if err != nil {
			return fmt.Errorf("no QEMU process for %s: %w", g.name, err)
		}
		qemus = append(qemus, p)
	}
	virt := b.host.Env.LibvirtdPid()
	a, err := snapCPU(b.jitsuPid, virt, qemus)
	if err != nil {
		return err
	}
	if err := sleep(ctx, b.o.quiet); err != nil {
		return err
	}
	z, err := snapCPU(b.jitsuPid, virt, qemus)
	if err != nil {
		return err
	}
	r.cpu = use(a, z)
	for _, p := range qemus {
		kib, err := benchkit.RSSKiB(p)
		if err != nil {
			return err
		}
		r.qemuRSSKiB += kib
	}
	if r.jitsuRSSKiB, err = benchkit.RSSKiB(b.jitsuPid); err != nil {
		return err
	}
	if r.jitsuFDs, err = benchkit.OpenFiles(b.jitsuPid); err != nil {
		return err
	}
	r.virtFDs, err = benchkit.OpenFiles(virt)
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
