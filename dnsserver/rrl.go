package dnsserver

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Response-rate limiting, as Knot's mod-rrl: UDP responses are accounted
// per (source prefix, response class, name) in a fixed-size table of hashed
// buckets. Each bucket earns Rate tokens per second (at most Rate banked);
// a response spends one. Without a token the response is limited: every
// Slip-th limited response goes out truncated (TC=1, no records), so that a
// real client behind the prefix retries over TCP; the others are dropped.
// With Window > 1 s, limited responses keep spending, down to
// -Rate×(Window-1): a prefix that floods stays limited until its rate over
// the window falls under Rate (BIND's window).

// RRLOptions configure response-rate limiting; Rate 0 turns it off.
type RRLOptions struct {
	// Rate is the responses per second allowed per source prefix, class and
	// name.
	Rate int
	// Slip: every Slip-th limited response is sent truncated; 0 drops all.
	Slip int
	// Window is how long excess is remembered (whole seconds, at least 1 s).
	Window time.Duration
	// IPv4Prefix and IPv6Prefix are the source prefix lengths accounted
	// together; 0 means 24 and 56.
	IPv4Prefix, IPv6Prefix int
}

// Tunables of the table.
const (
	rrlBuckets = 1 << 16 // a power of two
	rrlLocks   = 256
)

// Response classes (Knot's).
const (
	rrlNormal   = iota // a positive answer
	rrlNXDomain        // NXDOMAIN: accounted per zone
	rrlEmpty           // NODATA: accounted per zone
	rrlLarge           // an answer larger than rrlLargeSize
	rrlAny             // QTYPE ANY
	rrlError           // any other error rcode: one account per prefix
	rrlWildcard        // synthesized from a wildcard: accounted per zone
	rrlReferral        // a delegation: accounted per delegation point
	numRRLClasses
)

// rrlLargeSize is the size above which an answer is of class large.
const rrlLargeSize = 1024

var rrlClassNames = [numRRLClasses]string{"normal", "nxdomain", "nodata", "large", "any", "error", "wildcard", "referral"}

// RRL verdicts.
const (
	rrlPass = iota
	rrlSlip
	rrlDrop
)

type rrlBucket struct {
	key      uint64
	stamp    int64 // unix second of the last refill
	tokens   int32
	nlimited uint32
}

// rrlTable is the bounded accounting table.
type rrlTable struct {
	opts    RRLOptions
	floor   int32
	seed    maphash.Seed
	locks   [rrlLocks]sync.Mutex
	buckets []rrlBucket
}

func newRRLTable(o RRLOptions) *rrlTable {
	if o.IPv4Prefix == 0 {
		o.IPv4Prefix = 24
	}
	if o.IPv6Prefix == 0 {
		o.IPv6Prefix = 56
	}
	w := max(int64(o.Window/time.Second), 1)
	return &rrlTable{
		opts:    o,
		floor:   int32(-int64(o.Rate) * (w - 1)),
		seed:    maphash.MakeSeed(),
		buckets: make([]rrlBucket, rrlBuckets),
	}
}

// key hashes (class, source prefix, name), using buf as scratch space.
func (t *rrlTable) key(class int, src netip.Addr, name, buf []byte) (uint64, []byte) {
	buf = append(buf[:0], byte(class))
	if src.Is4() {
		p, _ := src.Prefix(t.opts.IPv4Prefix)
		a := p.Addr().As4()
		buf = append(buf, 4)
		buf = append(buf, a[:]...)
	} else {
		p, _ := src.Prefix(t.opts.IPv6Prefix)
		a := p.Addr().As16()
		buf = append(buf, 6)
		buf = append(buf, a[:]...)
	}
	buf = append(buf, name...)
	return maphash.Bytes(t.seed, buf), buf
}

// account charges one response with key k at time now.
func (t *rrlTable) account(k uint64, now time.Time) int {
	idx := k & (rrlBuckets - 1)
	mu := &t.locks[idx%rrlLocks]
	mu.Lock()
	defer mu.Unlock()
	b := &t.buckets[idx]
	sec := now.Unix()
	rate := int32(t.opts.Rate)
	if b.key != k {
		// Another account hashed here: take the bucket over if it has
		// been quiet for a window, share it (stricter) otherwise.
		if sec-b.stamp > max(int64(t.opts.Window/time.Second), 1) || b.stamp == 0 {
			*b = rrlBucket{key: k, stamp: sec, tokens: rate}
		}
	}
	if d := sec - b.stamp; d > 0 {
		b.tokens = int32(min(int64(b.tokens)+int64(rate)*d, int64(rate)))
		b.stamp = sec
	}
	if b.tokens > 0 {
		b.tokens--
		return rrlPass
	}
	if b.tokens > t.floor {
		b.tokens--
	}
	b.nlimited++
	if t.opts.Slip > 0 && b.nlimited%uint32(t.opts.Slip) == 0 {
		return rrlSlip
	}
	return rrlDrop
}

// classify returns a response's class and appends the name it is accounted
// under to name (lower-case wire form).
func classify(resp []byte, l msgLayout, name []byte) (int, []byte) {
	rcode := resp[3] & 0x0f
	qtype := uint16(0)
	if l.qd > 0 {
		if end, ok := skipName(resp, hdrLen); ok && end+2 <= len(resp) {
			qtype = binary.BigEndian.Uint16(resp[end:])
		}
	}
	switch {
	case rcode == 3: // NXDOMAIN
		return rrlNXDomain, authorityName(resp, l, name)
	case rcode != 0:
		return rrlError, name
	case qtype == 255:
		name, _ = appendLowerName(name, resp, hdrLen)
		return rrlAny, name
	case l.an == 0 && resp[2]&0x04 != 0: // authoritative NODATA
		return rrlEmpty, authorityName(resp, l, name)
	case l.an == 0 && l.ns > 0: // a referral: random names below a cut share it
		return rrlReferral, authorityName(resp, l, name)
	case len(resp) > rrlLargeSize:
		name, _ = appendLowerName(name, resp, hdrLen)
		return rrlLarge, name
	}
	if l.qd > 0 {
		name, _ = appendLowerName(name, resp, hdrLen)
	}
	return rrlNormal, name
}

// authorityName appends the owner of the first authority record (the
// zone's SOA in a negative answer), or nothing.
func authorityName(resp []byte, l msgLayout, name []byte) []byte {
	if l.ns == 0 {
		return name
	}
	out, ok := appendLowerName(name, resp, l.nsStart)
	if !ok {
		return name
	}
	return out
}

// wildcardZone returns the origin of the zone whose wildcard synthesized
// the answer for the lower-case wire name qname, "" if none did: answers
// for random names under a wildcard are accounted together, as NXDOMAIN
// answers are, or a flood of random names would escape the limit.
func (snap *snapshot) wildcardZone(qname, cacheKey []byte) string {
	if !snap.anyWildcards {
		return ""
	}
	// The usual case, cheaply: the fast path's cache key for this very
	// name (lower-case wire name, type, variant) is an existing answer.
	if len(cacheKey) == len(qname)+3 && bytes.Equal(cacheKey[:len(qname)], qname) && snap.cache[string(cacheKey)] != nil {
		return ""
	}
	var b strings.Builder
	for i := 0; i < len(qname) && qname[i] != 0; i += 1 + int(qname[i]) {
		b.Write(qname[i+1 : i+1+int(qname[i])])
		b.WriteByte('.')
	}
	name := b.String()
	if name == "" {
		name = "."
	}
	z := snap.findZone(name)
	if z == nil || !z.hasWildcards || z.nodes[name] != nil {
		return ""
	}
	return z.origin
}
