package config

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// decoder walks the generic result of toml.Decode, converting values,
// collecting every problem with its line.
type decoder struct {
	file string
	pos  positions
	errs []*Error
	// rrPaths is the key each parsed zone record came from.
	rrPaths map[dns.RR]string
	// zonesBroken is set when a zone was left out for a bad or missing
	// origin, so that names in it are not also reported as outside every
	// zone.
	zonesBroken bool
}

// errorf records a problem with the key at path.
func (d *decoder) errorf(path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: d.pos.line(path), Key: path, Msg: fmt.Sprintf(format, args...)})
}

// errorAt records a problem with the key at path on an explicit line.
func (d *decoder) errorAt(line int, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: path, Msg: fmt.Sprintf(format, args...)})
}

// table is one TOML table being decoded. Every key looked up is marked
// known; done reports the others as unknown.
type table struct {
	d     *decoder
	path  string
	m     map[string]any
	known []string
}

func (d *decoder) newTable(path string, m map[string]any) *table {
	return &table{d: d, path: path, m: m}
}

// key returns the path of the key k in t.
func (t *table) key(k string) string { return joinKey(t.path, k) }

// line returns the line of the key k, or of the table when k is absent.
func (t *table) line(k string) int { return t.d.pos.line(t.key(k)) }

// has reports whether the key k is set.
func (t *table) has(k string) bool {
	_, ok := t.m[k]
	return ok
}

func (t *table) get(k string) (any, bool) {
	t.known = append(t.known, k)
	v, ok := t.m[k]
	return v, ok
}

func (t *table) errorf(k, format string, args ...any) { t.d.errorf(t.key(k), format, args...) }

// done reports every key of t that was never looked up.
func (t *table) done() {
	known := map[string]bool{}
	for _, k := range t.known {
		known[k] = true
	}
	var unknown []string
	for k := range t.m {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	valid := append([]string(nil), t.known...)
	sort.Strings(valid)
	for _, k := range unknown {
		t.errorf(k, "unknown key (known keys here: %s)", strings.Join(valid, ", "))
	}
}

// typeName names the TOML type of a decoded value.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "date-time"
	case []any:
		return "array"
	case []map[string]any:
		return "array of tables"
	case map[string]any:
		return "table"
	}
	return fmt.Sprintf("%T", v)
}

func (t *table) wrongType(k, want string, v any) {
	t.errorf(k, "want %s, got %s", want, typeName(v))
}

// str returns the string at k; ok is false when it is absent or invalid.
func (t *table) str(k string) (string, bool) {
	v, ok := t.get(k)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		t.wrongType(k, "string", v)
	}
	return s, ok
}

// boolean returns the boolean at k.
func (t *table) boolean(k string) (bool, bool) {
	v, ok := t.get(k)
	if !ok {
		return false, false
	}
	b, ok := v.(bool)
	if !ok {
		t.wrongType(k, "boolean", v)
	}
	return b, ok
}

// integer returns the integer at k, which must lie in [min, max].
func (t *table) integer(k string, min, max int64) (int64, bool) {
	v, ok := t.get(k)
	if !ok {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		t.wrongType(k, "integer", v)
		return 0, false
	}
	if n < min || n > max {
		if max == math.MaxInt64 {
			t.errorf(k, "%d is out of range (want at least %d)", n, min)
		} else {
			t.errorf(k, "%d is out of range (want %d to %d)", n, min, max)
		}
		return 0, false
	}
	return n, true
}

// elem is a string element of an array, with its path.
type elem struct {
	s    string
	path string
}

// strings returns the strings of elems.
func elemStrings(elems []elem) []string {
	out := make([]string, len(elems))
	for i, e := range elems {
		out[i] = e.s
	}
	return out
}

// strList returns the string elements of the array at k; ok reports that k
// is an array. Elements of the wrong type are reported and left out.
func (t *table) strList(k string) ([]elem, bool) {
	v, ok := t.get(k)
	if !ok {
		return nil, false
	}
	arr, ok := v.([]any)
	if !ok {
		t.wrongType(k, "array of strings", v)
		return nil, false
	}
	out := make([]elem, 0, len(arr))
	for i, e := range arr {
		path := joinIndex(t.key(k), i)
		s, isStr := e.(string)
		if !isStr {
			t.d.errorf(path, "want string, got %s", typeName(e))
			continue
		}
		out = append(out, elem{s, path})
	}
	return out, true
}

// duration returns the duration string at k ("60s").
func (t *table) duration(k string) (time.Duration, bool) {
	v, ok := t.get(k)
	if !ok {
		return 0, false
	}
	s, ok := v.(string)
	if !ok {
		t.errorf(k, "want a duration string such as \"60s\", got %s", typeName(v))
		return 0, false
	}
	d, err := parseDuration(s)
	if err != nil {
		t.errorf(k, "%v", err)
		return 0, false
	}
	return d, true
}

// seconds returns the duration at k, which must be whole seconds that fit a
// DNS TTL.
func (t *table) seconds(k string) (time.Duration, bool) {
	d, ok := t.duration(k)
	if !ok {
		return 0, false
	}
	if d%time.Second != 0 {
		t.errorf(k, "%v is not a whole number of seconds (DNS TTLs are in seconds)", d)
		return 0, false
	}
	if d > math.MaxInt32*time.Second {
		t.errorf(k, "%v is longer than the largest TTL (%ds)", d, math.MaxInt32)
		return 0, false
	}
	return d, true
}

// size returns the size at k: a string such as "64MiB", or an integer
// number of bytes.
func (t *table) size(k string) (uint64, bool) {
	v, ok := t.get(k)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case string:
		n, err := ParseSize(x)
		if err != nil {
			t.errorf(k, "%v", err)
			return 0, false
		}
		return n, true
	case int64:
		if x < 0 {
			t.errorf(k, "negative size %d", x)
			return 0, false
		}
		return uint64(x), true
	}
	t.errorf(k, "want a size string such as \"64MiB\", got %s", typeName(v))
	return 0, false
}

// sub returns the table at k (an empty one when absent).
func (t *table) sub(k string) *table {
	v, ok := t.get(k)
	if !ok {
		return t.d.newTable(t.key(k), nil)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.wrongType(k, "table", v)
		return t.d.newTable(t.key(k), nil)
	}
	return t.d.newTable(t.key(k), m)
}

// tables returns the array of tables at k ([[k]] or an array of inline
// tables).
func (t *table) tables(k string) []*table {
	v, ok := t.get(k)
	if !ok {
		return nil
	}
	var out []*table
	switch x := v.(type) {
	case []map[string]any:
		for i, m := range x {
			out = append(out, t.d.newTable(joinIndex(t.key(k), i), m))
		}
	case []any:
		for i, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				t.d.errorf(joinIndex(t.key(k), i), "want table, got %s", typeName(e))
				continue
			}
			out = append(out, t.d.newTable(joinIndex(t.key(k), i), m))
		}
	default:
		t.errorf(k, "want array of tables ([[%s]]), got %s", k, typeName(v))
	}
	return out
}

// fileMode returns the permission bits at k: an integer (0o600) or an
// octal string ("0600").
func (t *table) fileMode(k string) (uint32, bool) {
	v, ok := t.get(k)
	if !ok {
		return 0, false
	}
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case string:
		u, err := strconv.ParseUint(strings.TrimPrefix(x, "0o"), 8, 32)
		if err != nil {
			t.errorf(k, "not an octal file mode: %q (want e.g. \"0600\")", x)
			return 0, false
		}
		n = int64(u)
	default:
		t.errorf(k, "want an octal file mode such as \"0600\" or 0o600, got %s", typeName(v))
		return 0, false
	}
	if n < 0 || n > 0o777 {
		t.errorf(k, "file mode %#o is out of range (want permission bits 0 to 0777)", n)
		return 0, false
	}
	return uint32(n), true
}
