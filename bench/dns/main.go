// Command dnsbench serves a benchmark zone with dnsserver and a fake,
// instant summoner, so that dnsperf can measure the real server; it also
// writes the same zone for knotd and the dnsperf query files. It is run by
// `make bench-dns` (bench/dns/bench.sh).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/dnsserver"
)

const origin = "bench.test."

// fakeSummoner answers at once and marks activity, like a running
// unikernel in the real summoner.
type fakeSummoner struct {
	addrs map[string][]netip.Addr
	seen  map[string]*atomic.Int64
}

func (f *fakeSummoner) Summon(_ context.Context, name string) ([]netip.Addr, error) {
	a, ok := f.addrs[name]
	if !ok {
		return nil, fmt.Errorf("unknown unikernel %q", name)
	}
	f.seen[name].Store(time.Now().UnixNano())
	return a, nil
}

func benchZone(n int) (dnsserver.Zone, *fakeSummoner) {
	z := dnsserver.Zone{Origin: origin, Unikernels: map[string]string{}}
	f := &fakeSummoner{addrs: map[string][]netip.Addr{}, seen: map[string]*atomic.Int64{}}
	add := func(s string) {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		z.Records = append(z.Records, rr)
	}
	add(origin + " 3600 IN SOA ns1.bench.test. hostmaster.bench.test. 1 3600 600 86400 60")
	add(origin + " 3600 IN NS ns1.bench.test.")
	add(origin + " 3600 IN MX 10 mail.bench.test.")
	add("ns1.bench.test. 3600 IN A 127.0.0.1")
	add("mail.bench.test. 3600 IN A 192.0.2.25")
	for i := range n {
		add(fmt.Sprintf("s%d.bench.test. 3600 IN A 192.0.%d.%d", i, 2+i/250, 1+i%250))
		name := fmt.Sprintf("u%d", i)
		z.Unikernels[name+"."+origin] = name
		f.addrs[name] = []netip.Addr{netip.AddrFrom4([4]byte{10, 213, byte(i / 250), byte(1 + i%250)})}
		f.seen[name] = new(atomic.Int64)
	}
	return z, f
}

func main() {
	listen := flag.String("listen", "127.0.0.1:5399", "address to serve (UDP and TCP)")
	names := flag.Int("names", 100, "static names and unikernel names in the zone")
	rrlRate := flag.Int("rrl-rate", 0, "response-rate limit (answers/s per source prefix, class and name); 0 = off")
	rrlSlip := flag.Int("rrl-slip", 2, "with -rrl-rate: every Nth limited answer truncated")
	cookies := flag.Bool("cookies", false, "answer DNS cookies")
	dir := flag.String("write", "", "write bench.test.zone (for knotd), static.queries and unikernel.queries into this directory, then exit")
	flag.Parse()
	z, f := benchZone(*names)
	cfg := dnsserver.Config{Zones: []dnsserver.Zone{z}, SummonTTL: time.Second}
	if *dir != "" {
		if err := write(*dir, z, cfg, f, *names); err != nil {
			fmt.Fprintln(os.Stderr, "dnsbench:", err)
			os.Exit(1)
		}
		return
	}
	s, err := dnsserver.New(cfg, dnsserver.Options{
		Listen: []string{*listen}, Summoner: f, Cookies: *cookies,
		RRL: dnsserver.RRLOptions{Rate: *rrlRate, Slip: *rrlSlip, Window: time.Second},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
	fmt.Println("dnsbench: serving", origin, "on", *listen)
	<-ctx.Done()
	_ = s.Close()
}

func write(dir string, z dnsserver.Zone, cfg dnsserver.Config, f *fakeSummoner, n int) error {
	zone := dnsserver.ZoneFile(z, cfg.SummonTTL, f.addrs)
	if err := os.WriteFile(filepath.Join(dir, "bench.test.zone"), []byte(zone), 0o644); err != nil {
		return fmt.Errorf("write zone: %w", err)
	}
	var static, uk strings.Builder
	for i := range n {
		fmt.Fprintf(&static, "s%d.%s A\n", i, origin)
		fmt.Fprintf(&uk, "u%d.%s A\n", i, origin)
	}
	if err := os.WriteFile(filepath.Join(dir, "static.queries"), []byte(static.String()), 0o644); err != nil {
		return fmt.Errorf("write queries: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "unikernel.queries"), []byte(uk.String()), 0o644); err != nil {
		return fmt.Errorf("write queries: %w", err)
	}
	return nil
}
