package roottest

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/synproxy"
)

// benchTrials runs count cold connections (client routed through the host,
// guest unreachable and its port closed until it listens after a random
// delay) and reports listen -> connect median and p99.
func benchTrials(b *testing.B, withProxy bool, count int) {
	nettestRequire(b)
	tp := newTopoB(b)
	var p *runningProxy
	if withProxy {
		p = tp.startProxy(b, synproxy.Limits{}, nil)
	}
	var gaps []time.Duration
	failed := 0
	for range b.N {
		for i := range count {
			r := tp.trial(b, p, tp.client, guest4, time.Duration(5+i%20)*time.Millisecond, true)
			if r.err != nil {
				failed++
				continue
			}
			gaps = append(gaps, r.gap)
		}
	}
	med, p99, mx := stats(gaps)
	b.ReportMetric(float64(med.Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	name := "without synproxy"
	if withProxy {
		name = "with synproxy"
	}
	fmt.Printf("synproxy bench: %s: guest listen -> client connect over %d connections: median %v, p99 %v, max %v, failed %d\n",
		name, len(gaps), med.Round(time.Microsecond), p99.Round(time.Microsecond), mx.Round(time.Microsecond), failed)
}

// BenchmarkListenToConnect measures the delay from the guest starting to
// listen to the client's connect completing, with and without the proxy.
// Run with -benchtime 1x: each iteration is a fixed set of connections.
func BenchmarkListenToConnect(b *testing.B) {
	b.Run("synproxy", func(b *testing.B) { benchTrials(b, true, 200) })
	b.Run("none", func(b *testing.B) { benchTrials(b, false, 10) })
}

// slab returns the kernel's slab memory (bytes) from /proc/meminfo.
func slab(b *testing.B) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		b.Fatalf("meminfo: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "Slab:" {
			kb, _ := strconv.ParseInt(fs[1], 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no Slab in /proc/meminfo")
	return 0
}

// BenchmarkKernelQueueMemory estimates the kernel memory of 10,000 held
// SYNs (the queued sk_buffs) from the machine's slab growth: approximate,
// other activity on the machine adds noise.
func BenchmarkKernelQueueMemory(b *testing.B) {
	nettestRequire(b)
	const n = 10_000
	tp := newTopoB(b)
	p := tp.startProxy(b, synproxy.Limits{PerAddress: n, Total: n, Bytes: 1 << 30}, nil)
	var perSYN float64
	for range b.N {
		if err := p.Hold([]netip.Addr{guest4}, tp.mac, tcpOnly); err != nil {
			b.Fatalf("hold: %v", err)
		}
		before := slab(b)
		flood(b, tp, guest4, 3*n) // random ports: enough to fill n slots
		deadline := time.Now().Add(20 * time.Second)
		for {
			total, _, _ := queueStats(b, tp)
			if held, _ := p.Held(); (held == n && total == n) || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		after := slab(b)
		held, _ := p.Held()
		perSYN = float64(after-before) / float64(held)
		fmt.Printf("synproxy bench: kernel: %d held SYNs, slab grew %d KiB (~%.0f B/SYN, approximate)\n", held, (after-before)>>10, perSYN)
		if err := p.Drop([]netip.Addr{guest4}); err != nil {
			b.Fatalf("drop: %v", err)
		}
	}
	b.ReportMetric(perSYN, "kernel-B/SYN")
}
