package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// sizeUnits are the suffixes ParseSize accepts: binary (KiB = 1024) and
// decimal (kB = 1000) multiples, and plain bytes.
var sizeUnits = []struct {
	suffix string
	mult   uint64
}{
	// Longest suffixes first, so "MiB" is not taken for "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseSize parses a size in bytes: a whole number with an optional unit,
// "64MiB", "1GiB", "512KiB" (binary, powers of 1024), "100MB", "1GB"
// (decimal, powers of 1000) or "4096" / "4096B" (bytes). Spaces between
// number and unit are allowed. The one-letter forms "64M" or "1G" are
// rejected as ambiguous.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	mult := uint64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			mult = u.mult
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	if n := len(t); n > 0 && strings.ContainsAny(t[n-1:], "kKmMgGtT") {
		num, l := strings.TrimSpace(t[:n-1]), strings.ToUpper(t[n-1:])
		return 0, fmt.Errorf("ambiguous size %q: write %s%siB (powers of 1024) or %s%sB (powers of 1000)", s, num, l, num, l)
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a size: %q (want e.g. \"64MiB\", \"1GiB\", \"512MB\" or a number of bytes)", s)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// FormatSize formats n bytes with the largest binary unit that divides it.
func FormatSize(n uint64) string {
	for i := 3; i >= 0; i-- {
		u := sizeUnits[i]
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatUint(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatUint(n, 10) + "B"
}

// parseDuration parses a non-negative Go duration string ("60s", "1m30s",
// "250ms").
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("not a duration: %q (want e.g. \"60s\", \"1m30s\", \"250ms\")", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}
