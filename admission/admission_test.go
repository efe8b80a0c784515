package admission

import (
	"fmt"
	"github.com/jitsu-unikernel/jitsu/config"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// call is one Admit call of a script.
type call struct {
	at     time.Duration // since t0
	src    string        // "" = no source address
	name   string
	ok     bool
	reason string
}

func TestAdmit(t *testing.T) {
	cfg := Config{
		BootRate: 1, BootBurst: 3, PrefixRate: 0.1, PrefixBurst: 2,
		IPv4Prefix: 24, IPv6Prefix: 56, TableSize: 64, RepeatWindow: time.Minute,
	}
	for _, tc := range []struct {
		name  string
		calls []call
	}{
		{"one source: its burst, then refused by prefix", []call{
			{0, "192.0.2.1", "a", true, ""},
			{0, "192.0.2.1", "b", true, ""},
			{0, "192.0.2.1", "c", false, ReasonSource},
			{0, "192.0.2.77", "d", false, ReasonSource}, // same /24
			{0, "192.0.3.1", "d", true, ""},             // another /24
		}},
		{"global rate across sources", []call{
			{0, "192.0.2.1", "a", true, ""},
			{0, "198.51.100.1", "b", true, ""},
			{0, "203.0.113.1", "c", true, ""},
			{0, "192.0.4.1", "d", false, ReasonBootRate},
			{time.Second, "192.0.4.1", "d", true, ""}, // one token back after 1 s
			{time.Second, "192.0.5.1", "e", false, ReasonBootRate},
		}},
		{"prefix refills at its rate", []call{
			{0, "192.0.2.1", "a", true, ""},
			{0, "192.0.2.1", "b", true, ""},
			{5 * time.Second, "192.0.2.1", "c", false, ReasonSource},
			{10 * time.Second, "192.0.2.1", "c", true, ""},
		}},
		{"a repeated name is not charged to the prefix again", []call{
			{0, "192.0.2.1", "a", true, ""},
			{0, "192.0.2.1", "b", true, ""},
			{time.Second, "192.0.2.1", "a", true, ""},
			{2 * time.Second, "192.0.2.1", "b", true, ""},
			{3 * time.Second, "192.0.2.1", "c", false, ReasonSource},
			{2 * time.Minute, "192.0.2.1", "a", true, ""}, // refilled anyway by then
		}},
		{"a refused boot charges nothing", []call{
			{0, "192.0.2.1", "a", true, ""},
			{0, "192.0.2.1", "b", true, ""},
			{0, "192.0.2.1", "c", false, ReasonSource},
			{0, "198.51.100.1", "x", true, ""}, // the global bucket still has 1
			{0, "198.51.100.2", "y", false, ReasonBootRate},
		}},
		{"IPv6 accounted per /56", []call{
			{0, "2001:db8:0:1::1", "a", true, ""},
			{0, "2001:db8:0:2::1", "b", true, ""},
			{0, "2001:db8:0:ff::1", "c", false, ReasonSource},
			{time.Second, "2001:db8:0:100::1", "c", true, ""}, // another /56
		}},
		{"IPv4-mapped IPv6 is IPv4", []call{
			{0, "::ffff:192.0.2.1", "a", true, ""},
			{0, "192.0.2.9", "b", true, ""},
			{0, "::ffff:192.0.2.3", "c", false, ReasonSource},
		}},
		{"no source: global bucket only", []call{
			{0, "", "a", true, ""},
			{0, "", "b", true, ""},
			{0, "", "c", true, ""},
			{0, "", "d", false, ReasonBootRate},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, cl := range tc.calls {
				var src netip.Addr
				if cl.src != "" {
					src = netip.MustParseAddr(cl.src)
				}
				ok, reason := c.Admit(src, cl.name, t0.Add(cl.at))
				if ok != cl.ok || reason != cl.reason {
					t.Fatalf("call %d (%v %s %s): got (%v, %q), want (%v, %q)", i, cl.at, cl.src, cl.name, ok, reason, cl.ok, cl.reason)
				}
			}
		})
	}
}

// TestOneSourceCannotBootEverything: a source asking for 1000 distinct
// names in a minute gets its burst plus its rate's worth, whatever the
// global rate allows.
func TestOneSourceCannotBootEverything(t *testing.T) {
	cfg := defaultConfig(64) // a big host: the global rate is not the limit
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("203.0.113.9")
	admitted := 0
	for i := range 1000 {
		at := t0.Add(time.Duration(i) * time.Minute / 1000)
		if ok, _ := c.Admit(src, fmt.Sprintf("u%d", i), at); ok {
			admitted++
		}
	}
	want := cfg.PrefixBurst + int(cfg.PrefixRate*60)
	if admitted > want {
		t.Fatalf("%d boots admitted for one source in a minute, want at most %d", admitted, want)
	}
	t.Logf("one /24 asking for 1000 names in 60 s: %d boots admitted (burst %d, %.1f/s)", admitted, cfg.PrefixBurst, cfg.PrefixRate)
}

// TestTableBounded: a million spoofed prefixes never grow the table, and
// the global rate bounds the boots.
func TestTableBounded(t *testing.T) {
	cfg := defaultConfig(2)
	cfg.TableSize = 1024
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	admitted := 0
	for i := range 1_000_000 {
		src := netip.AddrFrom4([4]byte{byte(i >> 16), byte(i >> 8), byte(i), 1})
		at := t0.Add(time.Duration(i) * 10 * time.Microsecond) // 100k/s for 10 s
		if ok, _ := c.Admit(src, fmt.Sprint(i%5000), at); ok {
			admitted++
		}
	}
	if len(c.table) != 1024 {
		t.Fatalf("table grew to %d", len(c.table))
	}
	if want := cfg.BootBurst + int(cfg.BootRate*10); admitted > want {
		t.Fatalf("%d boots in 10 s, want at most %d", admitted, want)
	}
	t.Logf("1M summons from 1M prefixes in 10 s: %d boots admitted", admitted)
}

// defaultConfig is the policy jitsu runs with on a host with cores: the
// rates of config's [admission] defaults.
func defaultConfig(cores int) Config {
	a := config.DefaultAdmission(cores)
	return NewConfig(a.BootRate, a.BootBurst, a.PrefixRate, a.PrefixBurst)
}

func TestDefaultConfig(t *testing.T) {
	for _, tc := range []struct {
		cores     int
		rate      float64
		burst     int
		wantValid bool
	}{
		{0, 1, 2, true},
		{1, 1, 2, true},
		{2, 1, 4, true},
		{16, 8, 32, true},
	} {
		c := defaultConfig(tc.cores)
		if c.BootRate != tc.rate || c.BootBurst != tc.burst {
			t.Errorf("%d cores: rate %v burst %d, want %v %d", tc.cores, c.BootRate, c.BootBurst, tc.rate, tc.burst)
		}
		if err := c.validate(); (err == nil) != tc.wantValid {
			t.Errorf("%d cores: validate: %v", tc.cores, err)
		}
	}
}

func TestNewRejects(t *testing.T) {
	base := defaultConfig(2)
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"zero boot rate", func(c *Config) { c.BootRate = 0 }, "boot rate"},
		{"zero prefix burst", func(c *Config) { c.PrefixBurst = 0 }, "per-prefix"},
		{"prefix /33", func(c *Config) { c.IPv4Prefix = 33 }, "prefix lengths"},
		{"table too big", func(c *Config) { c.TableSize = 1 << 30 }, "table size"},
		{"negative window", func(c *Config) { c.RepeatWindow = -1 }, "repeat window"},
	} {
		c := base
		tc.mutate(&c)
		_, err := New(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one about %q", tc.name, err, tc.want)
		}
	}
}

func BenchmarkAdmit(b *testing.B) {
	c, err := New(defaultConfig(2))
	if err != nil {
		b.Fatal(err)
	}
	src := netip.MustParseAddr("192.0.2.1")
	now := t0
	for i := 0; b.Loop(); i++ {
		c.Admit(src, "www", now.Add(time.Duration(i)))
	}
}
