package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// zoneRR is a parsed record with the key it came from.
type zoneRR struct {
	rr   dns.RR
	path string
	zone int // index in Config.Zones
}

// zones decodes the [[zone]] tables. Zones whose origin is invalid are
// left out (their errors recorded).
func (d *decoder) zones(ts []*table) []Zone {
	var zones []Zone
	origins := map[string]int{}
	for _, t := range ts {
		z := Zone{Line: d.pos.line(t.path), TTL: DefaultZoneTTL}
		originOK := false
		if s, ok := t.str("origin"); ok {
			o := canonicalName(s)
			if _, valid := dns.IsDomainName(o); !valid || strings.TrimSpace(s) == "" || strings.Contains(o, "*") {
				t.errorf("origin", "not a domain name: %q", s)
			} else if line, dup := origins[o]; dup {
				t.errorf("origin", "zone %s is already defined at line %d", o, line)
			} else {
				origins[o] = z.Line
				z.Origin = o
				originOK = true
			}
		} else if !t.has("origin") {
			t.errorf("origin", "missing: every [[zone]] needs an origin such as \"example.org.\"")
		}
		if v, ok := t.seconds("ttl"); ok {
			z.TTL = v
		}
		ttl := uint32(z.TTL / time.Second)

		soa, soaOK := t.str("soa")
		if !t.has("soa") {
			t.errorf("soa", "missing: every [[zone]] needs an SOA, e.g. \"ns1 hostmaster 1 3600 600 86400 60\"")
		}
		ns, nsOK := t.strList("ns")
		if !t.has("ns") || nsOK && len(ns) == 0 {
			t.errorf("ns", "missing: every [[zone]] needs at least one name server")
		}
		records, recordsOK := t.strList("records")
		t.done()
		if !originOK {
			d.zonesBroken = true
			continue
		}
		if soaOK {
			z.SOA = soa
			if rr := d.zoneRecord(t.key("soa"), z.Origin, ttl, "@ SOA "+soa, "SOA"); rr != nil {
				z.RRs = append(z.RRs, rr)
			}
		}
		if nsOK {
			for _, e := range ns {
				if rr := d.zoneRecord(e.path, z.Origin, ttl, "@ NS "+e.s, "NS"); rr != nil {
					z.RRs = append(z.RRs, rr)
					z.NS = append(z.NS, strings.ToLower(rr.(*dns.NS).Ns))
				}
			}
		}
		if recordsOK {
			z.Records = elemStrings(records)
			for _, e := range records {
				path, text := e.path, e.s
				rr := d.zoneRecord(path, z.Origin, ttl, text, "")
				if rr == nil {
					continue
				}
				switch h := rr.Header(); {
				case h.Rrtype == dns.TypeSOA:
					d.errorf(path, "the SOA record belongs in the zone's soa key")
				case h.Rrtype == dns.TypeNS && h.Name == z.Origin:
					d.errorf(path, "the zone's own NS records belong in its ns key")
				default:
					z.RRs = append(z.RRs, rr)
				}
			}
		}
		zones = append(zones, z)
	}
	return zones
}

// zoneRecord parses one record of a zone, checking its owner and class.
// want, when set, is the only type accepted. Problems are recorded at path
// and nil is returned.
func (d *decoder) zoneRecord(path, origin string, ttl uint32, text, want string) dns.RR {
	rr, err := parseRR(origin, ttl, text)
	if err != nil {
		d.errorf(path, "record %q: %v", text, err)
		return nil
	}
	h := rr.Header()
	h.Name = strings.ToLower(h.Name)
	switch {
	case want != "" && dns.TypeToString[h.Rrtype] != want:
		d.errorf(path, "record %q is not an %s record", text, want)
	case h.Class != dns.ClassINET:
		d.errorf(path, "record %q: only class IN is served, not %s", text, dns.ClassToString[h.Class])
	case !dns.IsSubDomain(origin, h.Name):
		d.errorf(path, "record %q: owner %s is outside the zone %s", text, h.Name, origin)
	default:
		if d.rrPaths == nil {
			d.rrPaths = map[dns.RR]string{}
		}
		d.rrPaths[rr] = path
		return rr
	}
	return nil
}

// parseRR parses exactly one resource record in zone-file syntax.
func parseRR(origin string, ttl uint32, text string) (dns.RR, error) {
	zp := dns.NewZoneParser(strings.NewReader(text), origin, "")
	zp.SetDefaultTTL(ttl)
	rr, ok := zp.Next()
	if err := zp.Err(); err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("no record in it")
	}
	if _, more := zp.Next(); more {
		return nil, errors.New("more than one record: write one record per string")
	}
	if err := zp.Err(); err != nil {
		return nil, err
	}
	return rr, nil
}

// indexRecords returns the records of all zones by owner name.
func (d *decoder) indexRecords(c *Config) map[string][]zoneRR {
	byName := map[string][]zoneRR{}
	for zi, z := range c.Zones {
		for _, rr := range z.RRs {
			n := rr.Header().Name
			byName[n] = append(byName[n], zoneRR{rr: rr, path: d.rrPaths[rr], zone: zi})
		}
	}
	return byName
}

// checkZones checks the records of all zones against each other: owners
// that belong to a more specific zone, and CNAMEs that share their name.
func (d *decoder) checkZones(c *Config) {
	for zi := range c.Zones {
		z := &c.Zones[zi]
		for _, rr := range z.RRs {
			h := rr.Header()
			owner := c.ZoneFor(h.Name)
			if owner == z {
				continue
			}
			// A delegation to a child zone is written in the parent.
			if (h.Rrtype == dns.TypeNS || h.Rrtype == dns.TypeDS) && h.Name == owner.Origin {
				continue
			}
			d.errorf(d.rrPaths[rr], "owner %s belongs to the more specific zone %s (line %d), not to %s",
				h.Name, owner.Origin, owner.Line, z.Origin)
		}
	}
	for name, rrs := range d.indexRecords(c) {
		for _, r := range rrs {
			if r.rr.Header().Rrtype != dns.TypeCNAME || len(rrs) == 1 {
				continue
			}
			var others []string
			for _, o := range rrs {
				if o.rr != r.rr {
					others = append(others, fmt.Sprintf("%s (line %d)", dns.TypeToString[o.rr.Header().Rrtype], d.pos.line(o.path)))
				}
			}
			sort.Strings(others)
			d.errorf(r.path, "a CNAME at %s cannot share its name with other records: %s", name, strings.Join(others, ", "))
		}
	}
}
