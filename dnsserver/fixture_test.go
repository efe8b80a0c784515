package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testSummonTTL = 5 * time.Second

// testUnikernels are the unikernel names of the test zone, and the fake
// summoner's addresses for them.
var (
	testUnikernels = map[string]string{
		"example.test.":         "apex",
		"www.example.test.":     "www",
		"v6.example.test.":      "v6",
		"mixed.example.test.":   "mixed",
		"broken.example.test.":  "broken",
		"uk.wild.example.test.": "www",
	}
	testAddrs = map[string][]netip.Addr{
		"apex":  {netip.MustParseAddr("10.213.0.6")},
		"www":   {netip.MustParseAddr("10.213.0.5")},
		"v6":    {netip.MustParseAddr("10.213.0.7"), netip.MustParseAddr("fd00::7")},
		"mixed": {netip.MustParseAddr("10.213.0.8")},
	}
)

// fakeSummoner returns testAddrs at once, an error for unknown unikernels,
// and blocks for the unikernels in block until ctx ends or release is closed.
type fakeSummoner struct {
	addrs   map[string][]netip.Addr
	block   map[string]bool
	release chan struct{}

	mu    sync.Mutex
	calls map[string]int
}

func newFakeSummoner() *fakeSummoner {
	return &fakeSummoner{addrs: testAddrs, calls: map[string]int{}, release: make(chan struct{})}
}

func (f *fakeSummoner) Summon(ctx context.Context, name string) ([]netip.Addr, error) {
	f.mu.Lock()
	f.calls[name]++
	f.mu.Unlock()
	if f.block[name] {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-f.release:
		}
	}
	a, ok := f.addrs[name]
	if !ok {
		return nil, errors.New("no such unikernel (fake)")
	}
	return a, nil
}

func (f *fakeSummoner) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

// readZone parses a zone file of testdata.
func readZone(t testing.TB, file, origin string) []dns.RR {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	zp := dns.NewZoneParser(strings.NewReader(string(data)), origin, file)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	return rrs
}

// testConfig is the configuration every test serves.
func testConfig(t testing.TB) Config {
	t.Helper()
	return Config{
		SummonTTL: testSummonTTL,
		Zones: []Zone{{
			Origin:     "example.test.",
			Records:    readZone(t, "testdata/example.test.zone", "example.test."),
			Unikernels: testUnikernels,
		}},
	}
}

// rrStrings renders records for order- and (optionally) TTL-independent
// comparison: names lower case, sorted.
func rrStrings(rrs []dns.RR, keepTTL bool) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		rr = dns.Copy(rr)
		if !keepTTL {
			rr.Header().Ttl = 0
		}
		out = append(out, strings.ToLower(rr.String()))
	}
	sort.Strings(out)
	return out
}

// mustRRs parses zone-file lines.
func mustRRs(t testing.TB, lines ...string) []dns.RR {
	t.Helper()
	var rrs []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("parse %q: %v", l, err)
		}
		rrs = append(rrs, rr)
	}
	return rrs
}

func fmtRRs(s []string) string { return fmt.Sprintf("\n\t%s", strings.Join(s, "\n\t")) }
