package main

import (
	"fmt"
	"time"

	"github.com/jitsu-unikernel/jitsu/bench/internal/benchkit"
)

// cpuSnap is the CPU times at one instant.
type cpuSnap struct {
	at                time.Time
	hostBusy, hostAll uint64
	jitsu, libvirtd   uint64
	qemu              map[int]uint64 // by pid
}

// snapCPU reads the CPU times of the host, jitsu, libvirtd and the QEMU
// processes qemus.
func snapCPU(jitsu, libvirtd int, qemus []int) (cpuSnap, error) {
	s := cpuSnap{at: time.Now(), qemu: map[int]uint64{}}
	var err error
	if s.hostBusy, s.hostAll, err = benchkit.HostTicks(); err != nil {
		return s, err
	}
	if s.jitsu, err = benchkit.ProcTicks(jitsu); err != nil {
		return s, fmt.Errorf("jitsu: %w", err)
	}
	if s.libvirtd, err = benchkit.ProcTicks(libvirtd); err != nil {
		return s, fmt.Errorf("libvirtd: %w", err)
	}
	for _, p := range qemus {
		if s.qemu[p], err = benchkit.ProcTicks(p); err != nil {
			return s, fmt.Errorf("QEMU pid %d: %w", p, err)
		}
	}
	return s, nil
}

// cpuUse is CPU use over a window, in percent of one core.
type cpuUse struct {
	host, jitsu, libvirtd, qemu float64 // qemu: all QEMU processes
}

// use returns the CPU used between a and b (a QEMU process must be in
// both).
func use(a, b cpuSnap) cpuUse {
	secs := b.at.Sub(a.at).Seconds()
	pct := func(ticks uint64) float64 { return float64(ticks) / benchkit.UserHZ / secs * 100 }
	u := cpuUse{host: pct(b.hostBusy - a.hostBusy), jitsu: pct(b.jitsu - a.jitsu), libvirtd: pct(b.libvirtd - a.libvirtd)}
	var q uint64
	for p, t := range b.qemu {
		if t0, ok := a.qemu[p]; ok {
			q += t - t0
		}
	}
	u.qemu = pct(q)
	return u
}
