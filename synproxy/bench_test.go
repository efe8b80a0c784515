package synproxy

import (
	"net/netip"
	"runtime"
	"testing"
)

// BenchmarkHoldMemory reports the Go heap used by the hold table for
// 10,000 held SYNs (the kernel keeps the packets themselves; see
// docs/synproxy.md for the kernel side).
func BenchmarkHoldMemory(b *testing.B) {
	const n = 10_000
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i] = synPacket(b, client, guest, uint16(1024+i), 80, uint32(i), 0)
	}
	var heapPerSYN float64
	for range b.N {
		p, err := New(Options{IO: discardIO{}, Limits: testLimits(Limits{PerAddress: n, Total: n, Bytes: 1 << 30})})
		if err != nil {
			b.Fatalf("new: %v", err)
		}
		p.running = true
		if err := p.Hold([]netip.Addr{guest}, mac, tcpOnly); err != nil {
			b.Fatalf("hold: %v", err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i, pkt := range pkts {
			p.handle(Packet{ID: uint32(i), Data: pkt})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if held, _ := p.Held(); held != n {
			b.Fatalf("held %d, want %d", held, n)
		}
		heapPerSYN = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(p)
	}
	b.ReportMetric(heapPerSYN, "heap-B/SYN")
	b.ReportMetric(heapPerSYN*n/1024, "heap-KiB/10k-SYNs")
}
