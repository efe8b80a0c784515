package dnsserver

import (
	"net/netip"

	"github.com/miekg/dns"
)

// summonFunc returns the addresses of a unikernel (calling the Summoner, or
// returning addresses already obtained).
type summonFunc func(unikernel string) ([]netip.Addr, error)

// resolve fills the answer, authority and additional sections and the rcode
// and AA bit of m for lname (lower-case FQDN inside z) and qtype. It calls
// summon only for A and AAAA at a unikernel's name, and returns its error.
func (s *snapshot) resolve(z *zoneData, m *dns.Msg, lname string, qtype uint16, summon summonFunc) error {
	m.Authoritative = true
	name := lname
	for hop := 0; ; hop++ {
		if cut := z.delegation(name, qtype); cut != nil {
			if hop == 0 {
				m.Authoritative = false
			}
			ns := cut.rrsets[dns.TypeNS]
			m.Ns = append(m.Ns, ns...)
			m.Extra = append(m.Extra, z.additional(ns)...)
			return nil
		}
		n := z.nodes[name]
		if n == nil {
			// RFC 4592: a name that does not exist is answered from the
			// wildcard below its closest encloser, if there is one.
			if n = z.wildcard(name); n == nil {
				m.Rcode = dns.RcodeNameError
				m.Ns = append(m.Ns, z.negativeSOA())
				return nil
			}
		}
		if qtype == dns.TypeANY {
			// RFC 8482 minimal answer: one RRset, the one of the lowest type
			// (what knotd does). Never summons a unikernel.
			if len(n.types) == 0 {
				m.Ns = append(m.Ns, z.negativeSOA())
				return nil
			}
			rrs := n.records(n.types[0], name)
			m.Answer = append(m.Answer, rrs...)
			m.Extra = append(m.Extra, z.additional(rrs)...)
			return nil
		}
		if cn := n.rrsets[dns.TypeCNAME]; len(cn) > 0 && qtype != dns.TypeCNAME {
			m.Answer = append(m.Answer, n.records(dns.TypeCNAME, name)[0])
			target := dns.CanonicalName(cn[0].(*dns.CNAME).Target)
			if !dns.IsSubDomain(z.origin, target) || hop+1 >= maxCNAMEChain || inAnswer(m.Answer, target) {
				return nil
			}
			name = target
			continue
		}
		if (qtype == dns.TypeA || qtype == dns.TypeAAAA) && n.unikernel != "" {
			addrs, err := summon(n.unikernel)
			if err != nil {
				return err
			}
			before := len(m.Answer)
			for _, a := range addrs {
				a = a.Unmap()
				hdr := dns.RR_Header{Name: n.name, Rrtype: qtype, Class: dns.ClassINET, Ttl: s.summonTTL}
				switch {
				case qtype == dns.TypeA && a.Is4():
					m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
				case qtype == dns.TypeAAAA && a.Is6():
					m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
				}
			}
			if len(m.Answer) > before {
				return nil
			}
			// No address of this family from the summoner: static records.
		}
		if rrs := n.records(qtype, name); len(rrs) > 0 {
			m.Answer = append(m.Answer, rrs...)
			m.Extra = append(m.Extra, z.additional(rrs)...)
			return nil
		}
		m.Ns = append(m.Ns, z.negativeSOA())
		return nil
	}
}

// wildcard returns the wildcard node that synthesizes answers for lname, a
// name with no node of its own (RFC 4592): the node "*.<closest encloser>",
// nil if there is none. The closest encloser is the nearest existing
// ancestor (empty non-terminals exist, so they block wildcards above them).
func (z *zoneData) wildcard(lname string) *node {
	if !z.hasWildcards {
		return nil
	}
	for p := lname; p != z.origin; {
		off, end := dns.NextLabel(p, 0)
		if end {
			return nil
		}
		p = p[off:]
		if z.nodes[p] != nil {
			return z.nodes["*."+p]
		}
	}
	return nil
}

// records returns n's RRset of type t for the query name lname: n's own
// records, or copies renamed to lname when n is a wildcard synthesizing
// lname.
func (n *node) records(t uint16, lname string) []dns.RR {
	rrs := n.rrsets[t]
	if n.name == lname || len(rrs) == 0 {
		return rrs
	}
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
		out[i].Header().Name = lname
	}
	return out
}

// inAnswer reports whether a CNAME owned by name is already in answer (a loop).
func inAnswer(answer []dns.RR, name string) bool {
	for _, rr := range answer {
		if rr.Header().Rrtype == dns.TypeCNAME && rr.Header().Name == name {
			return true
		}
	}
	return false
}

// delegation returns the node of the delegation point that covers name
// (a cut above it, or name itself unless qtype is DS), nil if none.
func (z *zoneData) delegation(name string, qtype uint16) *node {
	if n := z.nodes[name]; n != nil && n.cut && qtype != dns.TypeDS {
		return n
	}
	if cut := z.cutAbove(name); cut != "" {
		return z.nodes[cut]
	}
	return nil
}

// negativeSOA is the SOA put in the authority section of NXDOMAIN and NODATA
// answers: its TTL is the smaller of the SOA's TTL and MINIMUM (RFC 2308).
func (z *zoneData) negativeSOA() dns.RR { return z.negSOA }

// additional returns the static A and AAAA records (glue included) of the
// in-zone targets of NS, MX and SRV records. It never summons.
func (z *zoneData) additional(rrs []dns.RR) []dns.RR {
	var out []dns.RR
	for _, rr := range rrs {
		var target string
		switch r := rr.(type) {
		case *dns.NS:
			target = r.Ns
		case *dns.MX:
			target = r.Mx
		case *dns.SRV:
			target = r.Target
		default:
			continue
		}
		target = dns.CanonicalName(target)
		if !dns.IsSubDomain(z.origin, target) {
			continue
		}
		if n := z.nodes[target]; n != nil {
			out = append(out, n.rrsets[dns.TypeA]...)
			out = append(out, n.rrsets[dns.TypeAAAA]...)
		}
	}
	return out
}
