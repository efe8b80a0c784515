package dnsserver

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// TSIGKey is a zone's transfer key (RFC 8945).
type TSIGKey struct {
	Name      string // key name, FQDN
	Algorithm string // miekg/dns algorithm name, e.g. dns.HmacSHA256
	Secret    string // base64
}

// Journal bounds: the differences kept per zone for IXFR (older ones are
// dropped; a secondary that is further behind gets an AXFR).
const (
	maxJournalDiffs = 32
	maxJournalRRs   = 100_000
)

// ixfrDiff is one change of a zone (RFC 1995): the records deleted from the
// version with SOA from and added to make the version with SOA to.
type ixfrDiff struct {
	from, to *dns.SOA
	del, add []dns.RR
}

func (d *ixfrDiff) size() int { return len(d.del) + len(d.add) + 2 }

// xfrData is what a zone transfer sends: the zone's content at one serial
// and the journal that leads to it. Immutable once built.
type xfrData struct {
	soa     *dns.SOA
	records []dns.RR // every record but the SOA, in canonical order
	journal []*ixfrDiff
}

// zoneHistory is what the server remembers of a zone across reloads, to
// number its versions and answer IXFR.
type zoneHistory struct {
	configured uint32 // the serial in the configuration
	floor      uint32 // if not 0, the next serial is at least this (RFC 1982)
	keys       []string
	xfr        *xfrData
}

// xfrState is the Server's transfer state, guarded by updateMu.
type xfrState struct {
	history map[string]*zoneHistory
	notify  *notifier
	cfg     Config // the configuration installed last
}

// install numbers the zones of snap (a compiled cfg), makes it the one
// served and sends NOTIFY for the zones that changed. Called with updateMu
// held.
func (s *Server) install(snap *snapshot, cfg Config) {
	changed := s.applyHistory(snap, cfg.Addrs)
	s.buildCache(snap)
	s.snap.Store(snap)
	s.xfr.cfg = cfg
	s.xfr.notify.trigger(changed)
	s.met.serial.Reset()
	for origin, z := range snap.zones {
		s.met.serial.WithLabelValues(origin).Set(float64(z.soa.Serial))
	}
}

// raiseSerial makes the zone origin's serial at least serial (RFC 1982),
// reinstalling the current configuration if it must change. A secondary
// that holds a newer serial than ours (jitsu restarted after automatic
// bumps) thus gets a newer one still, and follows the zone again.
func (s *Server) raiseSerial(origin string, serial uint32) error {
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	h := s.xfr.history[origin]
	if h == nil || !serialNewer(serial, h.xfr.soa.Serial) {
		return nil
	}
	snap, err := compile(s.xfr.cfg)
	if err != nil {
		return fmt.Errorf("raise serial of %s: %w", origin, err)
	}
	h.floor = serial
	s.log.Info("a secondary holds a newer serial: raising ours past it", zap.String("zone", origin),
		zap.Uint32("from", h.xfr.soa.Serial), zap.Uint32("to", serial))
	s.install(snap, s.xfr.cfg)
	return nil
}

// serialNewer reports whether serial a is newer than b (RFC 1982).
func serialNewer(a, b uint32) bool { return a != b && int32(a-b) > 0 }

// zoneContent returns every record of z but the SOA, unikernel names as
// A/AAAA records with their configured addresses and the summon TTL, in
// canonical order, and the keys that identify the version's content (the
// records' text, and the SOA's without its serial).
func (s *snapshot) zoneContent(z *zoneData, addrs map[string][]netip.Addr) ([]dns.RR, []string) {
	var rrs []dns.RR
	for _, n := range z.nodes {
		for _, t := range n.types {
			if t != dns.TypeSOA {
				rrs = append(rrs, n.rrsets[t]...)
			}
		}
		if n.unikernel == "" {
			continue
		}
		for _, a := range addrs[n.unikernel] {
			a = a.Unmap()
			hdr := dns.RR_Header{Name: n.name, Class: dns.ClassINET, Ttl: s.summonTTL}
			if a.Is4() {
				hdr.Rrtype = dns.TypeA
				rrs = append(rrs, &dns.A{Hdr: hdr, A: a.AsSlice()})
			} else {
				hdr.Rrtype = dns.TypeAAAA
				rrs = append(rrs, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
	}
	keys := make([]string, len(rrs), len(rrs)+1)
	for i, rr := range rrs {
		keys[i] = rr.String()
	}
	sort.Sort(byKey{rrs, keys})
	soa := *z.soa
	soa.Serial = 0
	keys = append(keys, soa.String())
	return rrs, keys
}

// byKey sorts records and their keys together.
type byKey struct {
	rrs  []dns.RR
	keys []string
}

func (b byKey) Len() int           { return len(b.rrs) }
func (b byKey) Less(i, j int) bool { return b.keys[i] < b.keys[j] }
func (b byKey) Swap(i, j int) {
	b.rrs[i], b.rrs[j] = b.rrs[j], b.rrs[i]
	b.keys[i], b.keys[j] = b.keys[j], b.keys[i]
}

// applyHistory numbers the zones of snap against the versions served before
// (the serial scheme of docs/dns.md), sets each zone's served SOA and
// transfer data, and returns the origins whose serial changed. Called with
// updateMu held.
func (s *Server) applyHistory(snap *snapshot, addrs map[string][]netip.Addr) []string {
	if s.xfr.history == nil {
		s.xfr.history = map[string]*zoneHistory{}
	}
	var changed []string
	next := make(map[string]*zoneHistory, len(snap.zones))
	for origin, z := range snap.zones {
		rrs, keys := snap.zoneContent(z, addrs)
		conf := z.soa.Serial
		prev := s.xfr.history[origin]
		serial := conf
		if prev != nil {
			switch {
			case conf != prev.configured && serialNewer(conf, prev.xfr.soa.Serial):
				serial = conf
			case conf != prev.configured || !slices.Equal(keys, prev.keys):
				serial = prev.xfr.soa.Serial + 1
			default:
				serial = prev.xfr.soa.Serial
			}
			if prev.floor != 0 && serialNewer(prev.floor, serial) {
				serial = prev.floor
			}
		}
		z.setSerial(serial)
		x := &xfrData{soa: z.soa, records: rrs}
		if prev != nil {
			x.journal = prev.xfr.journal
			if serial != prev.xfr.soa.Serial {
				x.journal = appendDiff(x.journal, diff(prev.xfr, x))
				if serial != conf {
					s.log.Info("zone changed: serial bumped", zap.String("zone", origin),
						zap.Uint32("configured", conf), zap.Uint32("serial", serial))
				}
			}
		}
		if prev == nil || serial != prev.xfr.soa.Serial {
			changed = append(changed, origin)
		}
		z.xfr = x
		next[origin] = &zoneHistory{configured: conf, keys: keys, xfr: x}
	}
	s.xfr.history = next
	sort.Strings(changed)
	return changed
}

// setSerial makes serial the zone's served serial (SOA answers, negative
// answers, transfers).
func (z *zoneData) setSerial(serial uint32) {
	if z.soa.Serial == serial {
		return
	}
	soa := dns.Copy(z.soa).(*dns.SOA)
	soa.Serial = serial
	z.soa = soa
	z.nodes[z.origin].rrsets[dns.TypeSOA] = []dns.RR{soa}
	neg := *soa
	neg.Hdr.Ttl = min(neg.Hdr.Ttl, neg.Minttl)
	z.negSOA = &neg
}

// diff returns the change from version a to version b.
func diff(a, b *xfrData) *ixfrDiff {
	d := &ixfrDiff{from: a.soa, to: b.soa}
	in := func(rrs []dns.RR) map[string]bool {
		m := make(map[string]bool, len(rrs))
		for _, rr := range rrs {
			m[rr.String()] = true
		}
		return m
	}
	inA, inB := in(a.records), in(b.records)
	for _, rr := range a.records {
		if !inB[rr.String()] {
			d.del = append(d.del, rr)
		}
	}
	for _, rr := range b.records {
		if !inA[rr.String()] {
			d.add = append(d.add, rr)
		}
	}
	return d
}

// appendDiff returns journal (not modified) with d added, the oldest
// differences dropped beyond the bounds.
func appendDiff(journal []*ixfrDiff, d *ixfrDiff) []*ixfrDiff {
	out := append(slices.Clone(journal), d)
	total := 0
	for _, x := range out {
		total += x.size()
	}
	for len(out) > maxJournalDiffs || total > maxJournalRRs && len(out) > 0 {
		total -= out[0].size()
		out = out[1:]
	}
	return out
}

// Results of a transfer (the result label of jitsu_dns_transfers_total).
const (
	xfrFull        = "full"
	xfrIncremental = "incremental"
	xfrUpToDate    = "uptodate"
	xfrBadTSIG     = "bad_tsig"
)

// transferRecords returns the records answering a transfer request from a
// secondary holding serial have (ixfr false: AXFR): a single SOA when it is
// up to date, the journal's differences since have (IXFR) when they are
// kept, else the whole zone (AXFR form).
func (x *xfrData) transferRecords(ixfr bool, have uint32) []dns.RR {
	rrs, _ := x.transfer(ixfr, have)
	return rrs
}

// transfer is transferRecords, with the kind of answer (xfrFull...).
func (x *xfrData) transfer(ixfr bool, have uint32) ([]dns.RR, string) {
	cur := x.soa
	if ixfr {
		if have == cur.Serial || serialNewer(have, cur.Serial) {
			return []dns.RR{cur}, xfrUpToDate
		}
		for i, d := range x.journal {
			if d.from.Serial != have {
				continue
			}
			out := []dns.RR{cur}
			for _, d := range x.journal[i:] {
				out = append(out, d.from)
				out = append(out, d.del...)
				out = append(out, d.to)
				out = append(out, d.add...)
			}
			return append(out, cur), xfrIncremental
		}
	}
	out := make([]dns.RR, 0, len(x.records)+2)
	out = append(out, cur)
	out = append(out, x.records...)
	return append(out, cur), xfrFull
}

// allowed reports whether src may transfer z.
func (z *zoneData) allowed(src netip.Addr) bool {
	src = src.Unmap()
	for _, ap := range z.secondaries {
		if ap.Addr() == src {
			return true
		}
	}
	return false
}

// compileTransfer checks and copies a zone's transfer settings.
func compileTransfer(zd *zoneData, z Zone) error {
	for _, ap := range z.Secondaries {
		if !ap.IsValid() || ap.Port() == 0 {
			return fmt.Errorf("secondary %v: want an address and a port", ap)
		}
		zd.secondaries = append(zd.secondaries, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	if k := z.TSIG; k != nil {
		name, err := canonicalName(k.Name)
		if err != nil {
			return fmt.Errorf("TSIG key name: %w", err)
		}
		alg := dns.CanonicalName(k.Algorithm)
		switch alg {
		case dns.HmacSHA1, dns.HmacSHA224, dns.HmacSHA256, dns.HmacSHA384, dns.HmacSHA512:
		default:
			return fmt.Errorf("TSIG key %s: unsupported algorithm %q", name, k.Algorithm)
		}
		if strings.TrimSpace(k.Secret) == "" {
			return fmt.Errorf("TSIG key %s: empty secret", name)
		}
		zd.tsig = &TSIGKey{Name: name, Algorithm: alg, Secret: k.Secret}
	}
	return nil
}
