package summoner

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/hypervisor/hvtest"
)

// runBench runs a summoner over an auto-ready fake with the real clock.
func runBench(b *testing.B, uks []Unikernel) (*Summoner, *hvtest.Fake) {
	b.Helper()
	f := hvtest.New()
	f.SetAutoReady(true)
	s, err := New(Options{Hypervisor: f, Probe: f.WaitReady, Registerer: prometheus.NewRegistry()}, uks)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
		_ = f.Close()
	})
	<-s.Running()
	return s, f
}

// BenchmarkSummonRunning measures Summon for a ready unikernel: the cost
// the DNS server pays on every query of a running unikernel's name.
func BenchmarkSummonRunning(b *testing.B) {
	s, _ := runBench(b, []Unikernel{uk("web", "10.0.0.1")})
	ctx := context.Background()
	if _, err := s.Summon(ctx, "web"); err != nil {
		b.Fatal(err)
	}
	if err := s.WaitState(ctx, "web", StateReady); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Summon(ctx, "web"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSummonRunningParallel is BenchmarkSummonRunning from every CPU
// at once, on the same unikernel.
func BenchmarkSummonRunningParallel(b *testing.B) {
	s, _ := runBench(b, []Unikernel{uk("web", "10.0.0.1")})
	ctx := context.Background()
	if _, err := s.Summon(ctx, "web"); err != nil {
		b.Fatal(err)
	}
	if err := s.WaitState(ctx, "web", StateReady); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Summon(ctx, "web"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func manyUnikernels(n int) []Unikernel {
	uks := make([]Unikernel, n)
	for i := range uks {
		name := fmt.Sprintf("uk%05d", i)
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		uks[i] = Unikernel{
			Name:        name,
			Addrs:       []netip.Addr{addr},
			Spec:        hypervisor.Spec{Name: name, Kernel: "/var/lib/jitsu/images/example/bzImage", MemoryBytes: 64 << 20, Cmdline: "ip=" + addr.String() + "::10.0.0.254:255.0.0.0::eth0:off"},
			IdleTimeout: time.Minute,
			BootTimeout: 30 * time.Second,
			StopMode:    hypervisor.StopDestroy,
			Ready:       Ready{Kind: ReadyTCP, Port: 80},
			Triggers:    []Trigger{TriggerDNS, TriggerTCP},
		}
	}
	return uks
}

// BenchmarkStartup10000 configures 10,000 unikernels and reports the time
// from New to Run having adopted and started (startup-ms), and the heap the
// summoner holds once running (heap-MiB, runtime.MemStats.HeapInuse delta
// after GC, the unikernel configs themselves included).
func BenchmarkStartup10000(b *testing.B) {
	const n = 10000
	for b.Loop() {
		b.StopTimer()
		uks := manyUnikernels(n)
		f := hvtest.New()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		t0 := time.Now()
		s, err := New(Options{Hypervisor: f, Registerer: prometheus.NewRegistry()}, uks)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		<-s.Running()
		startup := time.Since(t0)
		b.StopTimer()
		uks = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		if len(s.Status()) != n {
			b.Fatal("not all configured")
		}
		b.ReportMetric(float64(startup.Microseconds())/1000, "startup-ms")
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
		cancel()
		<-done
		_ = f.Close()
		b.StartTimer()
	}
}
