package dnsserver

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// newTestServer returns a server (not listening) with the test zone.
func newTestServer(t *testing.T, fs *fakeSummoner) *Server {
	t.Helper()
	s, err := New(testConfig(t), Options{Listen: []string{"127.0.0.1:0"}, Summoner: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// exchange runs one query through the handler (UDP unless tcp).
func exchange(t *testing.T, s *Server, q *dns.Msg, tcp bool) *dns.Msg {
	t.Helper()
	req, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{}
	resp, deferred := s.process(w, s.snap.Load(), req, tcp, true, nil)
	if deferred {
		t.Fatal("deferred although mayBlock")
	}
	if resp == nil {
		return nil
	}
	var m dns.Msg
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("unpack answer: %v", err)
	}
	return &m
}

func TestHandler(t *testing.T) {
	soa := "example.test. 60 IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60"
	tests := []struct {
		name        string
		qname       string
		qtype       uint16
		edns        bool
		tcp         bool
		rcode       int
		aa, tc      bool
		answer, ns  []string
		extra       []string
		summonCalls map[string]int
	}{
		{name: "unikernel A", qname: "www.example.test.", qtype: dns.TypeA, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"www.example.test. 5 IN A 10.213.0.5"}, summonCalls: map[string]int{"www": 1}},
		{name: "case preserved", qname: "WWW.example.TEST.", qtype: dns.TypeA, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"www.example.test. 5 IN A 10.213.0.5"}, summonCalls: map[string]int{"www": 1}},
		{name: "unikernel AAAA without IPv6 is NODATA", qname: "www.example.test.", qtype: dns.TypeAAAA, aa: true,
			ns: []string{soa}, summonCalls: map[string]int{"www": 1}},
		{name: "unikernel AAAA", qname: "v6.example.test.", qtype: dns.TypeAAAA, aa: true,
			answer: []string{"v6.example.test. 5 IN AAAA fd00::7"}, summonCalls: map[string]int{"v6": 1}},
		{name: "MX at unikernel name does not summon", qname: "www.example.test.", qtype: dns.TypeMX, aa: true,
			ns: []string{soa}, summonCalls: map[string]int{"www": 0}},
		{name: "static TXT at unikernel name", qname: "mixed.example.test.", qtype: dns.TypeTXT, aa: true,
			answer: []string{`mixed.example.test. 3600 IN TXT "static data at a unikernel name"`}, summonCalls: map[string]int{"mixed": 0}},
		{name: "apex SOA", qname: "example.test.", qtype: dns.TypeSOA, aa: true,
			answer:      []string{"example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60"},
			summonCalls: map[string]int{"apex": 0}},
		{name: "apex A summons", qname: "example.test.", qtype: dns.TypeA, aa: true,
			answer: []string{"example.test. 5 IN A 10.213.0.6"}, summonCalls: map[string]int{"apex": 1}},
		{name: "apex NS with glue", qname: "example.test.", qtype: dns.TypeNS, aa: true,
			answer: []string{"example.test. 3600 IN NS ns1.example.test.", "example.test. 3600 IN NS ns2.example.test."},
			extra:  []string{"ns1.example.test. 3600 IN A 127.0.0.1", "ns2.example.test. 3600 IN AAAA ::1"}},
		{name: "ANY is minimal and never summons", qname: "example.test.", qtype: dns.TypeANY, aa: true,
			answer:      []string{"example.test. 3600 IN NS ns1.example.test.", "example.test. 3600 IN NS ns2.example.test."},
			extra:       []string{"ns1.example.test. 3600 IN A 127.0.0.1", "ns2.example.test. 3600 IN AAAA ::1"},
			summonCalls: map[string]int{"apex": 0}},
		{name: "ANY at unikernel-only name is NODATA", qname: "www.example.test.", qtype: dns.TypeANY, aa: true,
			ns: []string{soa}, summonCalls: map[string]int{"www": 0}},
		{name: "NXDOMAIN", qname: "nothere.example.test.", qtype: dns.TypeA, rcode: dns.RcodeNameError, aa: true, ns: []string{soa}},
		{name: "empty non-terminal is NODATA", qname: "b.c.example.test.", qtype: dns.TypeA, aa: true, ns: []string{soa}},
		{name: "CNAME chain", qname: "alias.example.test.", qtype: dns.TypeA, aa: true,
			answer: []string{"alias.example.test. 3600 IN CNAME alias2.example.test.", "alias2.example.test. 3600 IN CNAME mail.example.test.",
				"mail.example.test. 3600 IN A 192.0.2.25"}},
		{name: "CNAME to unikernel summons", qname: "touk.example.test.", qtype: dns.TypeA, aa: true,
			answer:      []string{"touk.example.test. 3600 IN CNAME www.example.test.", "www.example.test. 5 IN A 10.213.0.5"},
			summonCalls: map[string]int{"www": 1}},
		{name: "dangling CNAME", qname: "dangling.example.test.", qtype: dns.TypeA, rcode: dns.RcodeNameError, aa: true,
			answer: []string{"dangling.example.test. 3600 IN CNAME nothere.example.test."}, ns: []string{soa}},
		{name: "CNAME loop stops", qname: "loop1.example.test.", qtype: dns.TypeA, aa: true,
			answer: []string{"loop1.example.test. 3600 IN CNAME loop2.example.test.", "loop2.example.test. 3600 IN CNAME loop1.example.test."}},
		{name: "referral", qname: "www.sub.example.test.", qtype: dns.TypeA,
			ns:    []string{"sub.example.test. 3600 IN NS ns.sub.example.test.", "sub.example.test. 3600 IN NS ns.elsewhere.org."},
			extra: []string{"ns.sub.example.test. 3600 IN A 192.0.2.53"}},
		{name: "DS at delegation is the parent's", qname: "sub.example.test.", qtype: dns.TypeDS, aa: true, ns: []string{soa}},
		{name: "out of zone", qname: "www.other.org.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "summon error is SERVFAIL", qname: "broken.example.test.", qtype: dns.TypeA, rcode: dns.RcodeServerFailure,
			summonCalls: map[string]int{"broken": 1}},
		{name: "TXT of broken unikernel name needs no summon", qname: "broken.example.test.", qtype: dns.TypeTXT, aa: true,
			ns: []string{soa}, summonCalls: map[string]int{"broken": 0}},
		{name: "big answer truncated over UDP", qname: "big.example.test.", qtype: dns.TypeTXT, edns: true, aa: true, tc: true},
		{name: "medium answer truncated without EDNS", qname: "medium.example.test.", qtype: dns.TypeTXT, aa: true, tc: true},
		{name: "wildcard synthesizes", qname: "x.wild.example.test.", qtype: dns.TypeA, aa: true,
			answer: []string{"x.wild.example.test. 3600 IN A 192.0.2.77"}, summonCalls: map[string]int{"www": 0}},
		{name: "wildcard deeper", qname: "a.b.x.wild.example.test.", qtype: dns.TypeTXT, aa: true,
			answer: []string{`a.b.x.wild.example.test. 3600 IN TXT "wild"`}},
		{name: "wildcard NODATA", qname: "x.wild.example.test.", qtype: dns.TypeAAAA, aa: true, ns: []string{soa}},
		{name: "wildcard blocked by empty non-terminal", qname: "c.b.wild.example.test.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, aa: true, ns: []string{soa}},
		{name: "wildcard blocked by existing name", qname: "host.wild.example.test.", qtype: dns.TypeTXT, aa: true, ns: []string{soa}},
		{name: "wildcard never matches a unikernel's name", qname: "uk.wild.example.test.", qtype: dns.TypeTXT, aa: true,
			ns: []string{soa}, summonCalls: map[string]int{"www": 0}},
		{name: "wildcard CNAME followed into a wildcard", qname: "f.cnw.example.test.", qtype: dns.TypeA, aa: true,
			answer: []string{"f.cnw.example.test. 3600 IN CNAME target.wild.example.test.", "target.wild.example.test. 3600 IN A 192.0.2.77"}},
		{name: "AXFR over UDP", qname: "example.test.", qtype: dns.TypeAXFR, rcode: dns.RcodeNotImplemented},
		{name: "AXFR over TCP", qname: "example.test.", qtype: dns.TypeAXFR, tcp: true, rcode: dns.RcodeNotAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFakeSummoner()
			s := newTestServer(t, fs)
			q := new(dns.Msg).SetQuestion(tt.qname, tt.qtype)
			q.RecursionDesired = false
			if tt.edns {
				q.SetEdns0(1232, false)
			}
			r := exchange(t, s, q, tt.tcp)
			if r == nil {
				t.Fatal("no answer")
			}
			if r.Rcode != tt.rcode || r.Authoritative != tt.aa || r.Truncated != tt.tc || r.RecursionAvailable || !r.Response {
				t.Errorf("rcode %s AA %v TC %v RA %v QR %v; want %s AA %v TC %v RA false QR true", dns.RcodeToString[r.Rcode],
					r.Authoritative, r.Truncated, r.RecursionAvailable, r.Response, dns.RcodeToString[tt.rcode], tt.aa, tt.tc)
			}
			if len(r.Question) != 1 || r.Question[0].Name != tt.qname {
				t.Errorf("question %v, want name %s", r.Question, tt.qname)
			}
			for _, sec := range []struct {
				name string
				got  []dns.RR
				want []string
			}{{"answer", r.Answer, tt.answer}, {"authority", r.Ns, tt.ns}, {"additional", r.Extra, tt.extra}} {
				g, w := rrStrings(sec.got, true), rrStrings(mustRRs(t, sec.want...), true)
				if !slices.Equal(g, w) {
					t.Errorf("%s:\ngot:%s\nwant:%s", sec.name, fmtRRs(g), fmtRRs(w))
				}
			}
			for uk, n := range tt.summonCalls {
				if got := fs.count(uk); got != n {
					t.Errorf("Summon(%q) called %d times, want %d", uk, got, n)
				}
			}
		})
	}
}

// TestHandlerCachedAndSlowPathsAgree checks that the pre-encoded answers
// equal what the general path builds, for every cached entry.
func TestHandlerCachedAndSlowPathsAgree(t *testing.T) {
	s := newTestServer(t, newFakeSummoner())
	snap := s.snap.Load()
	if len(snap.cache) == 0 {
		t.Fatal("no cached answers")
	}
	for _, e := range snap.cache {
		q := new(dns.Msg).SetQuestion(e.lname, e.qtype)
		q.Id = 4242
		q.RecursionDesired = true
		if e.variant != variantNoEDNS {
			q.SetEdns0(4096, e.variant == variantEDNSDO)
		}
		req, _ := q.Pack()
		w := &worker{}
		fq, ok := parseFast(req, w)
		if !ok {
			t.Fatalf("%s %s: fast parse failed", e.lname, dns.TypeToString[e.qtype])
		}
		fast, ok := s.fromCache(w, snap, e, req, fq, true, nil)
		if !ok {
			t.Fatalf("%s %s: not answered from cache", e.lname, dns.TypeToString[e.qtype])
		}
		slow, err := s.slow(snap, req, true, w.summonFunc(s), nil, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(fast, slow) {
			t.Errorf("%s %s variant %d: cached answer differs from the general path", e.lname, dns.TypeToString[e.qtype], e.variant)
		}
	}
}

func TestHandlerMalformed(t *testing.T) {
	s := newTestServer(t, newFakeSummoner())
	valid, _ := new(dns.Msg).SetQuestion("www.example.test.", dns.TypeA).Pack()
	tests := []struct {
		name  string
		req   []byte
		drop  bool
		rcode int
	}{
		{name: "empty", req: nil, drop: true},
		{name: "short header", req: valid[:11], drop: true},
		{name: "response bit set", req: append([]byte{valid[0], valid[1], 0x80 | valid[2]}, valid[3:]...), drop: true},
		{name: "question cut", req: valid[:20], rcode: dns.RcodeFormatError},
		{name: "qdcount 0", req: append(append([]byte{}, valid[:4]...), append([]byte{0, 0}, valid[6:12]...)...), rcode: dns.RcodeFormatError},
		{name: "opcode NOTIFY", req: append([]byte{valid[0], valid[1], valid[2] | 4<<3}, valid[3:]...), rcode: dns.RcodeNotAuth},
		{name: "opcode UPDATE", req: append([]byte{valid[0], valid[1], valid[2] | 5<<3}, valid[3:]...), rcode: dns.RcodeNotAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, tcp := range []bool{false, true} {
				resp, _ := s.process(&worker{}, s.snap.Load(), tt.req, tcp, true, nil)
				if tt.drop {
					if resp != nil {
						t.Errorf("tcp=%v: answered, want dropped", tcp)
					}
					continue
				}
				var m dns.Msg
				if err := m.Unpack(resp); err != nil {
					t.Fatalf("tcp=%v: unpack: %v", tcp, err)
				}
				if m.Rcode != tt.rcode || m.Id != valid0ID(valid) || !m.Response {
					t.Errorf("tcp=%v: rcode %s id %d, want %s id %d", tcp, dns.RcodeToString[m.Rcode], m.Id,
						dns.RcodeToString[tt.rcode], valid0ID(valid))
				}
			}
		})
	}
}

func valid0ID(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }
