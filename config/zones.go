package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
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
		z.Secondaries = d.secondaries(t)
		if t.has("tsig") {
			z.TSIG = d.tsig(t.sub("tsig"))
		} else {
			t.known = append(t.known, "tsig")
		}
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

// checkWildcardTargets reports wildcard CNAME records that lead (directly
// or through more CNAMEs) to a unikernel's name: every name below the
// wildcard would then summon the unikernel. A unikernel's names are
// explicit.
func (d *decoder) checkWildcardTargets(c *Config) {
	unikernel := map[string]string{}
	for _, u := range c.Unikernels {
		for _, n := range u.DNS {
			unikernel[canonicalName(n)] = u.Name
		}
	}
	byName := d.indexRecords(c)
	target := func(rrs []zoneRR) (string, bool) {
		for _, r := range rrs {
			if cn, ok := r.rr.(*dns.CNAME); ok {
				return canonicalName(cn.Target), true
			}
		}
		return "", false
	}
	for name, rrs := range byName {
		if !strings.HasPrefix(name, "*.") {
			continue
		}
		for _, r := range rrs {
			cn, ok := r.rr.(*dns.CNAME)
			if !ok {
				continue
			}
			t := canonicalName(cn.Target)
			for hop := 0; hop < 16; hop++ {
				if u, isUK := unikernel[t]; isUK {
					d.errorf(r.path, "the wildcard %s leads to %s, a name of unikernel %q: any name below the wildcard would summon it (write the names explicitly)", name, t, u)
					break
				}
				if t, ok = target(byName[t]); !ok {
					break
				}
			}
		}
	}
}

// TSIGKey is a zone's transfer key (RFC 8945).
type TSIGKey struct {
	Name      string // key name, lower-case FQDN
	Algorithm string // as miekg/dns names it, e.g. "hmac-sha256."
	Secret    string // base64, as read from SecretFile
	// SecretFile is the file the secret was read from.
	SecretFile string
}

// tsigAlgorithms maps the algorithm names accepted in zone.tsig.algorithm
// (knotd's spelling) to miekg/dns's.
var tsigAlgorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// secondaries decodes zone.secondaries: "192.0.2.53", "2001:db8::53" or
// "[2001:db8::53]:5353".
func (d *decoder) secondaries(t *table) []netip.AddrPort {
	list, ok := t.strList("secondaries")
	if !ok {
		return nil
	}
	var out []netip.AddrPort
	seen := map[netip.Addr]string{}
	for _, e := range list {
		ap, err := parseSecondary(e.s)
		if err != nil {
			d.errorf(e.path, "%v", err)
			continue
		}
		if prev, dup := seen[ap.Addr()]; dup {
			d.errorf(e.path, "secondary %s is listed twice (also as %q)", ap.Addr(), prev)
			continue
		}
		seen[ap.Addr()] = e.s
		out = append(out, ap)
	}
	return out
}

// parseSecondary parses one secondary's address, with an optional port.
func parseSecondary(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.AddrPort{}, fmt.Errorf("secondary %q: no IPv6 zone allowed", s)
		}
		return netip.AddrPortFrom(a.Unmap(), DefaultSecondaryPort), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("secondary %q: want an IP address, optionally with a port (\"192.0.2.53\", \"192.0.2.53:53\", \"[2001:db8::53]:53\")", s)
	}
	if ap.Port() == 0 || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("secondary %q: port 0 or IPv6 zone not allowed", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// tsig decodes zone.tsig = { name, algorithm, secret_file } and reads the
// secret. It returns nil after recording any problem.
func (d *decoder) tsig(t *table) *TSIGKey {
	if t.m == nil {
		t.known = append(t.known, "name", "algorithm", "secret_file")
		return nil
	}
	k := &TSIGKey{}
	ok := true
	if s, has := t.str("name"); has {
		n := canonicalName(s)
		if _, valid := dns.IsDomainName(n); !valid || strings.TrimSpace(s) == "" || n == "." {
			t.errorf("name", "not a key name: %q (want a domain name such as \"xfr.example.org.\")", s)
			ok = false
		}
		k.Name = n
	} else {
		if !t.has("name") {
			t.errorf("name", "missing: a TSIG key needs a name (the key's name on the secondary)")
		}
		ok = false
	}
	alg := DefaultTSIGAlgorithm
	if s, has := t.str("algorithm"); has {
		alg = strings.ToLower(strings.TrimSuffix(s, "."))
	} else if t.has("algorithm") {
		ok = false
	}
	if a, known := tsigAlgorithms[alg]; known {
		k.Algorithm = a
	} else {
		names := make([]string, 0, len(tsigAlgorithms))
		for n := range tsigAlgorithms {
			names = append(names, n)
		}
		sort.Strings(names)
		t.errorf("algorithm", "unknown TSIG algorithm %q (known: %s)", alg, strings.Join(names, ", "))
		ok = false
	}
	if s, has := t.str("secret_file"); has {
		if d.absPath(t, "secret_file", s) {
			secret, err := readTSIGSecret(s)
			if err != nil {
				t.errorf("secret_file", "%v", err)
				ok = false
			}
			k.Secret, k.SecretFile = secret, s
		} else {
			ok = false
		}
	} else {
		if !t.has("secret_file") {
			t.errorf("secret_file", "missing: the file holding the key's base64 secret (e.g. from `keymgr -t NAME hmac-sha256`)")
		}
		ok = false
	}
	t.done()
	if !ok {
		return nil
	}
	return k
}

// readTSIGSecret reads a base64 TSIG secret: the file holds the secret
// alone, or a knotd key file line "secret: ..." (as `keymgr -t` writes).
func readTSIGSecret(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read TSIG secret: %w", err)
	}
	secret := ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if v, found := strings.CutPrefix(line, "secret:"); found {
			secret = strings.TrimSpace(v)
			break
		}
		if secret == "" && line != "" && !strings.HasPrefix(line, "#") && !strings.Contains(line, ":") {
			secret = line
		}
	}
	secret = strings.Trim(secret, `"'`)
	if secret == "" {
		return "", fmt.Errorf("TSIG secret file %s is empty", path)
	}
	raw, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		return "", fmt.Errorf("TSIG secret in %s is not base64: %w", path, err)
	}
	if len(raw) < 16 {
		return "", fmt.Errorf("TSIG secret in %s is only %d bytes; use at least 16 (e.g. head -c 32 /dev/urandom | base64)", path, len(raw))
	}
	return secret, nil
}
