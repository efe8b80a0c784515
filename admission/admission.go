// Package admission decides whether a summon may boot a unikernel, so that
// nobody on the internet can make the host boot everything: a global
// boot-rate token bucket (config's [admission] sizes it from the host's
// cores by default), and
// per-source-prefix accounting (/24 for IPv4, /56 for IPv6) in a bounded
// table of hashed buckets, so that one source's share of boots is bounded
// too. A source prefix is charged once per distinct unikernel name within
// Config.RepeatWindow.
//
// It is pure Go with no dependency on the rest of jitsu: the caller asks
// Admit just before it would start a boot (not for a unikernel that runs or
// is booting already), and counts the refusals by reason.
package admission

import (
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Reasons Admit gives for a refusal.
const (
	// ReasonBootRate: the host's boot rate is used up.
	ReasonBootRate = "boot_rate"
	// ReasonSource: the source prefix has used up its share of boots.
	ReasonSource = "source_prefix"
)

// Config is the admission policy. Rates are per second.
type Config struct {
	// BootRate and BootBurst are the global token bucket: boots per second
	// in all, and how many may start at once after a quiet period.
	BootRate  float64
	BootBurst int
	// PrefixRate and PrefixBurst are each source prefix's bucket.
	PrefixRate  float64
	PrefixBurst int
	// IPv4Prefix and IPv6Prefix are the prefix lengths sources are
	// accounted under.
	IPv4Prefix, IPv6Prefix int
	// TableSize is the number of prefix buckets (rounded up to a power of
	// two). Prefixes that hash to the same bucket share it (stricter).
	TableSize int
	// RepeatWindow: a prefix asking again for a name it was admitted for
	// within this window is not charged again (the global bucket is).
	RepeatWindow time.Duration
}

// NewConfig returns the policy with the given rates (boots per second and
// bursts, globally and per source prefix; their user-facing defaults are
// config's, [admission]) and the package's own accounting: sources under
// their /24 or /56, a table of 16384 prefix buckets, and a repeat window of
// a minute.
func NewConfig(bootRate float64, bootBurst int, prefixRate float64, prefixBurst int) Config {
	return Config{
		BootRate:     bootRate,
		BootBurst:    bootBurst,
		PrefixRate:   prefixRate,
		PrefixBurst:  prefixBurst,
		IPv4Prefix:   24,
		IPv6Prefix:   56,
		TableSize:    1 << 14,
		RepeatWindow: time.Minute,
	}
}

func (c Config) validate() error {
	switch {
	case c.BootRate <= 0 || c.BootBurst < 1:
		return fmt.Errorf("boot rate %v/s with burst %d: both must be positive", c.BootRate, c.BootBurst)
	case c.PrefixRate <= 0 || c.PrefixBurst < 1:
		return fmt.Errorf("per-prefix rate %v/s with burst %d: both must be positive", c.PrefixRate, c.PrefixBurst)
	case c.IPv4Prefix < 1 || c.IPv4Prefix > 32 || c.IPv6Prefix < 1 || c.IPv6Prefix > 128:
		return fmt.Errorf("prefix lengths /%d and /%d out of range", c.IPv4Prefix, c.IPv6Prefix)
	case c.TableSize < 1 || c.TableSize > 1<<24:
		return fmt.Errorf("table size %d out of range (1 to 16M)", c.TableSize)
	case c.RepeatWindow < 0:
		return errors.New("negative repeat window")
	}
	return nil
}

// bucket is a token bucket.
type bucket struct {
	tokens float64
	at     time.Time
}

// take refills b at rate up to burst as of now, and takes one token if
// charge; it reports whether a token was (or would be) available.
func (b *bucket) take(rate float64, burst int, now time.Time, charge bool) bool {
	if b.at.IsZero() {
		b.tokens, b.at = float64(burst), now
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(b.tokens+d.Seconds()*rate, float64(burst))
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	if charge {
		b.tokens--
	}
	return true
}

// recentNames is how many names a prefix bucket remembers.
const recentNames = 4

// prefixBucket is one source prefix's account.
type prefixBucket struct {
	prefix netip.Prefix
	bucket
	names [recentNames]uint64 // hashes of recently admitted names
	when  [recentNames]time.Time
	next  int
}

// Controller applies a Config. It is safe for concurrent use.
type Controller struct {
	cfg  Config
	seed maphash.Seed

	mu     sync.Mutex
	global bucket
	table  []prefixBucket
}

// New returns a Controller for cfg.
func New(cfg Config) (*Controller, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	n := 1
	for n < cfg.TableSize {
		n <<= 1
	}
	return &Controller{cfg: cfg, seed: maphash.MakeSeed(), table: make([]prefixBucket, n)}, nil
}

// prefixOf is the prefix src is accounted under (invalid for an invalid
// src: such a summon is charged to the global bucket only).
func (c *Controller) prefixOf(src netip.Addr) netip.Prefix {
	src = src.Unmap()
	bits := c.cfg.IPv6Prefix
	if src.Is4() {
		bits = c.cfg.IPv4Prefix
	}
	p, err := src.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// Admit reports whether a summon from src may boot the unikernel name at
// time now; if not, reason is ReasonBootRate or ReasonSource. An admitted
// boot is charged to both the global and the source's bucket.
func (c *Controller) Admit(src netip.Addr, name string, now time.Time) (ok bool, reason string) {
	p := c.prefixOf(src)
	nh := maphash.String(c.seed, name)
	c.mu.Lock()
	defer c.mu.Unlock()
	var pb *prefixBucket
	repeat := false
	if p.IsValid() {
		pb = c.slot(p, now)
		repeat = pb.recent(nh, now, c.cfg.RepeatWindow)
		if !repeat && !pb.take(c.cfg.PrefixRate, c.cfg.PrefixBurst, now, false) {
			return false, ReasonSource
		}
	}
	if !c.global.take(c.cfg.BootRate, c.cfg.BootBurst, now, true) {
		return false, ReasonBootRate
	}
	if pb != nil && !repeat {
		pb.take(c.cfg.PrefixRate, c.cfg.PrefixBurst, now, true)
		pb.remember(nh, now)
	}
	return true, ""
}

// slot returns p's bucket: the one p hashes to, taken over if it belongs
// to another prefix that has refilled completely (it owes nothing), shared
// otherwise.
func (c *Controller) slot(p netip.Prefix, now time.Time) *prefixBucket {
	a := p.Addr().As16()
	h := maphash.Bytes(c.seed, append(a[:], byte(p.Bits())))
	pb := &c.table[h&uint64(len(c.table)-1)]
	if pb.prefix == p {
		return pb
	}
	if pb.prefix.IsValid() {
		refilled := pb.bucket
		refilled.take(c.cfg.PrefixRate, c.cfg.PrefixBurst, now, false)
		if refilled.tokens < float64(c.cfg.PrefixBurst) {
			return pb // the other prefix still owes boots: share its bucket
		}
	}
	*pb = prefixBucket{prefix: p}
	return pb
}

// recent reports whether nh was admitted for this prefix within window.
func (pb *prefixBucket) recent(nh uint64, now time.Time, window time.Duration) bool {
	for i, h := range pb.names {
		if h == nh && !pb.when[i].IsZero() && now.Sub(pb.when[i]) < window {
			return true
		}
	}
	return false
}

func (pb *prefixBucket) remember(nh uint64, now time.Time) {
	pb.names[pb.next], pb.when[pb.next] = nh, now
	pb.next = (pb.next + 1) % recentNames
}
