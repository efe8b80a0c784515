package dnsserver

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// maxCNAMEChain bounds how many CNAME records one answer follows.
const maxCNAMEChain = 16

// node is every record the zone holds at one owner name. A node with no
// records is an empty non-terminal (or an unikernel-only name).
type node struct {
	name      string              // lower-case FQDN
	rrsets    map[uint16][]dns.RR // static records by type
	types     []uint16            // keys of rrsets, ascending
	unikernel string              // unikernel owning the name, "" if none
	cut       bool                // NS records below the apex: a delegation point
}

// zoneData is one compiled zone.
type zoneData struct {
	origin string
	soa    *dns.SOA
	negSOA *dns.SOA // SOA for negative answers, TTL min(TTL, MINIMUM)
	nodes  map[string]*node
	// hasWildcards is set when some owner name starts with "*." (RFC 4592).
	hasWildcards bool
	secondaries  []netip.AddrPort // may transfer the zone; get NOTIFY
	tsig         *TSIGKey         // signs transfers and NOTIFY, if set
	xfr          *xfrData         // the zone as transferred (set by Update)
}

// snapshot is the immutable compiled form of a Config: what every query reads.
type snapshot struct {
	zones     map[string]*zoneData
	summonTTL uint32
	cache     map[string]*cacheEntry // pre-encoded answers, see cache.go
	// anyWildcards is set when some zone has a wildcard (RRL accounts
	// their answers per zone).
	anyWildcards bool
}

// compile validates cfg and builds its snapshot (without the answer cache).
func compile(cfg Config) (*snapshot, error) {
	if cfg.SummonTTL < 0 {
		return nil, fmt.Errorf("summon TTL %v: must not be negative", cfg.SummonTTL)
	}
	ttl := cfg.SummonTTL / time.Second
	if ttl > 1<<31-1 {
		return nil, fmt.Errorf("summon TTL %v: too large", cfg.SummonTTL)
	}
	s := &snapshot{zones: make(map[string]*zoneData, len(cfg.Zones)), summonTTL: uint32(ttl)}
	var errs []error
	for i, z := range cfg.Zones {
		zd, err := compileZone(z)
		if err != nil {
			errs = append(errs, fmt.Errorf("zone %d (%q): %w", i, z.Origin, err))
			continue
		}
		if _, dup := s.zones[zd.origin]; dup {
			errs = append(errs, fmt.Errorf("zone %d (%q): configured twice", i, z.Origin))
			continue
		}
		s.zones[zd.origin] = zd
		s.anyWildcards = s.anyWildcards || zd.hasWildcards
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func canonicalName(name string) (string, error) {
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return "", fmt.Errorf("%q is not a domain name", name)
	}
	return dns.CanonicalName(name), nil
}

func compileZone(z Zone) (*zoneData, error) {
	origin, err := canonicalName(z.Origin)
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	zd := &zoneData{origin: origin, nodes: make(map[string]*node)}
	get := func(name string) *node {
		n := zd.nodes[name]
		if n == nil {
			n = &node{name: name, rrsets: map[uint16][]dns.RR{}}
			zd.nodes[name] = n
			// Ancestors up to the apex exist as (possibly empty) nodes.
			for p := name; p != origin; {
				off, end := dns.NextLabel(p, 0)
				if end {
					break
				}
				p = p[off:]
				if zd.nodes[p] != nil {
					break
				}
				zd.nodes[p] = &node{name: p, rrsets: map[uint16][]dns.RR{}}
			}
		}
		return n
	}
	get(origin)
	var errs []error
	if err := compileTransfer(zd, z); err != nil {
		errs = append(errs, err)
	}
	for i, rr := range z.Records {
		if rr == nil {
			errs = append(errs, fmt.Errorf("record %d: nil", i))
			continue
		}
		rr = dns.Copy(rr)
		h := rr.Header()
		owner, err := canonicalName(h.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("record %d (%s): owner: %w", i, rr, err))
			continue
		}
		if !dns.IsSubDomain(origin, owner) {
			errs = append(errs, fmt.Errorf("record %d (%s): owner outside zone %s", i, rr, origin))
			continue
		}
		if h.Class != dns.ClassINET {
			errs = append(errs, fmt.Errorf("record %d (%s): class %s, want IN", i, rr, dns.ClassToString[h.Class]))
			continue
		}
		switch h.Rrtype {
		case dns.TypeOPT, dns.TypeTSIG, dns.TypeSIG, dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeNone:
			errs = append(errs, fmt.Errorf("record %d (%s): type %s not allowed in a zone", i, rr, dns.TypeToString[h.Rrtype]))
			continue
		case dns.TypeSOA:
			if owner != origin {
				errs = append(errs, fmt.Errorf("record %d (%s): SOA below the apex", i, rr))
				continue
			}
		}
		h.Name = owner
		if strings.HasPrefix(owner, "*.") {
			zd.hasWildcards = true
		}
		n := get(owner)
		n.rrsets[h.Rrtype] = append(n.rrsets[h.Rrtype], rr)
	}
	apex := zd.nodes[origin]
	switch soas := apex.rrsets[dns.TypeSOA]; len(soas) {
	case 1:
		zd.soa = soas[0].(*dns.SOA)
	case 0:
		errs = append(errs, errors.New("no SOA record at the apex"))
	default:
		errs = append(errs, fmt.Errorf("%d SOA records at the apex, want 1", len(soas)))
	}
	if len(apex.rrsets[dns.TypeNS]) == 0 {
		errs = append(errs, errors.New("no NS record at the apex"))
	}
	names := make([]string, 0, len(z.Unikernels))
	for name := range z.Unikernels {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		uk := z.Unikernels[name]
		owner, err := canonicalName(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("unikernel %q: %w", uk, err))
			continue
		}
		if uk == "" {
			errs = append(errs, fmt.Errorf("name %s: empty unikernel name", owner))
			continue
		}
		if !dns.IsSubDomain(origin, owner) {
			errs = append(errs, fmt.Errorf("unikernel %q: name %s outside zone %s", uk, owner, origin))
			continue
		}
		if strings.Contains(owner, "*") {
			errs = append(errs, fmt.Errorf("unikernel %q: name %s is a wildcard (a unikernel's names are explicit)", uk, owner))
			continue
		}
		n := get(owner)
		if n.unikernel != "" && n.unikernel != uk {
			errs = append(errs, fmt.Errorf("name %s claimed by unikernels %q and %q", owner, n.unikernel, uk))
			continue
		}
		n.unikernel = uk
	}
	for name, n := range zd.nodes {
		for t := range n.rrsets {
			n.types = append(n.types, t)
		}
		sort.Slice(n.types, func(i, j int) bool { return n.types[i] < n.types[j] })
		if _, ok := n.rrsets[dns.TypeCNAME]; ok {
			if len(n.rrsets[dns.TypeCNAME]) > 1 {
				errs = append(errs, fmt.Errorf("name %s: more than one CNAME", name))
			}
			if len(n.types) > 1 || n.unikernel != "" {
				errs = append(errs, fmt.Errorf("name %s: CNAME and other data", name))
			}
		}
		if name != origin && len(n.rrsets[dns.TypeNS]) > 0 {
			n.cut = true
		}
	}
	// Nothing but glue may live below a delegation, and no unikernel at all.
	for name, n := range zd.nodes {
		if cut := zd.cutAbove(name); cut != "" {
			if n.unikernel != "" {
				errs = append(errs, fmt.Errorf("unikernel %q: name %s below delegation %s", n.unikernel, name, cut))
			}
			for _, t := range n.types {
				if t != dns.TypeA && t != dns.TypeAAAA {
					errs = append(errs, fmt.Errorf("name %s: %s record below delegation %s (only glue allowed)", name, dns.TypeToString[t], cut))
				}
			}
		} else if n.cut && n.unikernel != "" {
			errs = append(errs, fmt.Errorf("unikernel %q: name %s is a delegation point", n.unikernel, name))
		}
	}
	errs = append(errs, zd.checkWildcardTargets()...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	neg := *zd.soa
	neg.Hdr.Ttl = min(neg.Hdr.Ttl, neg.Minttl)
	zd.negSOA = &neg
	return zd, nil
}

// checkWildcardTargets reports wildcard CNAMEs that lead to a unikernel's
// name: a wildcard never summons.
func (z *zoneData) checkWildcardTargets() []error {
	var errs []error
	for name, n := range z.nodes {
		if !strings.HasPrefix(name, "*.") || len(n.rrsets[dns.TypeCNAME]) == 0 {
			continue
		}
		t := n
		for hop := 0; hop < maxCNAMEChain && t != nil; hop++ {
			cn := t.rrsets[dns.TypeCNAME]
			if len(cn) == 0 {
				break
			}
			t = z.nodes[dns.CanonicalName(cn[0].(*dns.CNAME).Target)]
			if t != nil && t.unikernel != "" {
				errs = append(errs, fmt.Errorf("wildcard %s leads to %s, a name of unikernel %q (a wildcard never summons)", name, t.name, t.unikernel))
				break
			}
		}
	}
	return errs
}

// cutAbove returns the delegation point strictly above name, "" if none.
func (z *zoneData) cutAbove(name string) string {
	for p := name; p != z.origin; {
		off, end := dns.NextLabel(p, 0)
		if end {
			return ""
		}
		p = p[off:]
		if p == z.origin {
			return ""
		}
		if n := z.nodes[p]; n != nil && n.cut {
			return p
		}
	}
	return ""
}

// findZone returns the zone with the longest origin containing lname
// (lower case FQDN), nil if none.
func (s *snapshot) findZone(lname string) *zoneData {
	for p := lname; ; {
		if z := s.zones[p]; z != nil {
			return z
		}
		off, end := dns.NextLabel(p, 0)
		if end {
			return nil
		}
		p = p[off:]
	}
}

// ZoneFile renders z as zone-file text (one record per line), for feeding
// another server (knotd) the same data: the unikernel names get A and AAAA
// records with TTL summonTTL and the addresses given for their unikernel.
func ZoneFile(z Zone, summonTTL time.Duration, addrs map[string][]netip.Addr) string {
	var b strings.Builder
	for _, rr := range z.Records {
		b.WriteString(rr.String())
		b.WriteByte('\n')
	}
	names := make([]string, 0, len(z.Unikernels))
	for n := range z.Unikernels {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, a := range addrs[z.Unikernels[n]] {
			t := "A"
			if a.Unmap().Is6() {
				t = "AAAA"
			}
			fmt.Fprintf(&b, "%s\t%d\tIN\t%s\t%s\n", n, int64(summonTTL/time.Second), t, a.Unmap())
		}
	}
	return b.String()
}
