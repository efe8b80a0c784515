package dnsserver

import (
	"errors"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// maxCacheEntries bounds the pre-encoded answers built per configuration.
const maxCacheEntries = 500_000

// cachedTypes are the types pre-encoded at every name, besides the types
// the name owns (their NODATA answers are cached too).
var cachedTypes = []uint16{
	dns.TypeA, dns.TypeAAAA, dns.TypeNS, dns.TypeSOA, dns.TypeMX, dns.TypeTXT,
	dns.TypeCNAME, dns.TypeSRV, dns.TypePTR, dns.TypeCAA, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeDS,
}

// cacheEntry is the pre-encoded answer to one (name, qtype, EDNS variant),
// with ID 0, RD and CD clear and the question name in lower case.
type cacheEntry struct {
	wire    []byte             // static answer
	counter prometheus.Counter // jitsu_dns_queries_total child for it

	// unikernel is set when the answer holds a unikernel's addresses:
	// Summon is called on every hit, and dyn caches the encoding of the
	// last addresses seen.
	unikernel string
	lname     string
	qtype     uint16
	variant   int
	dyn       atomic.Pointer[dynAnswer]
}

// dynAnswer is the encoded answer for one set of unikernel addresses.
type dynAnswer struct {
	addrs   []netip.Addr
	wire    []byte
	counter prometheus.Counter
}

var errNeedSummon = errors.New("needs summon")

func cacheQuery(lname string, qtype uint16, variant int) *qinfo {
	return &qinfo{
		hasQuestion: true, lname: lname, qtype: qtype, qclass: dns.ClassINET,
		edns: variant != variantNoEDNS, do: variant == variantEDNSDO, udpSize: maxUDPPayload,
	}
}

// buildCache pre-encodes the answers for every name of every zone.
func (s *Server) buildCache(snap *snapshot) {
	snap.cache = make(map[string]*cacheEntry)
	var buf []byte
	for _, z := range snap.zones {
		for lname, n := range z.nodes {
			types := append(slices.Clone(n.types), cachedTypes...)
			slices.Sort(types)
			types = slices.Compact(types)
			wname := make([]byte, 256)
			off, err := dns.PackDomainName(lname, wname, 0, nil, false)
			if err != nil {
				continue
			}
			wname = wname[:off]
			for _, t := range types {
				for v := range numVariants {
					if len(snap.cache) >= maxCacheEntries {
						return
					}
					e := &cacheEntry{lname: lname, qtype: t, variant: v}
					var uk string
					m, zone, err := snap.answer(cacheQuery(lname, t, v), true, func(name string) ([]netip.Addr, error) {
						uk = name
						return nil, errNeedSummon
					})
					switch {
					case errors.Is(err, errNeedSummon):
						e.unikernel = uk
					case err != nil:
						continue
					default:
						wire, err := m.PackBuffer(buf)
						if err != nil {
							continue
						}
						e.wire = slices.Clone(wire)
						e.counter = s.met.query(zone, t, m.Rcode)
					}
					key := append(slices.Clone(wname), byte(t>>8), byte(t), byte(v))
					snap.cache[string(key)] = e
				}
			}
		}
	}
}

// buildDynamic encodes e's answer for the given unikernel addresses.
func (s *Server) buildDynamic(snap *snapshot, e *cacheEntry, addrs []netip.Addr) *dynAnswer {
	m, zone, err := snap.answer(cacheQuery(e.lname, e.qtype, e.variant), true, func(string) ([]netip.Addr, error) {
		return addrs, nil
	})
	if err != nil {
		return nil
	}
	wire, err := m.Pack()
	if err != nil {
		return nil
	}
	return &dynAnswer{addrs: slices.Clone(addrs), wire: wire, counter: s.met.query(zone, e.qtype, m.Rcode)}
}
