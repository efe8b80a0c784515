package dnsserver

import (
	"errors"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// maxUDPPayload is the largest UDP response sent and the buffer size
// advertised in our OPT record (the DNS flag day 2020 value, knotd's default).
const maxUDPPayload = 1232

// errDefer is returned by a summonFunc that may not block: the query is
// answered later by a goroutine that may.
var errDefer = errors.New("summon deferred")

// EDNS variants of a query, part of the answer cache key.
const (
	variantNoEDNS = iota
	variantEDNS
	variantEDNSDO
	numVariants
)

// qinfo is what an answer depends on.
type qinfo struct {
	id            uint16
	opcode        int
	rd, cd        bool
	hasQuestion   bool
	lname         string // lower-case question name
	qtype, qclass uint16
	edns          bool
	ednsVersion   uint8
	do            bool
	udpSize       uint16
	src           netip.Addr // client's address (transfer ACL)
	tsigOK        bool       // signed with the zone's TSIG key
}

func (q *qinfo) udpLimit() int {
	if !q.edns {
		return dns.MinMsgSize
	}
	return int(min(max(q.udpSize, dns.MinMsgSize), maxUDPPayload))
}

// newReply starts the response to q (no records, rcode NOERROR, AA clear).
func newReply(q *qinfo) *dns.Msg {
	m := &dns.Msg{Compress: true}
	m.Id = q.id
	m.Response = true
	m.Opcode = q.opcode
	m.RecursionDesired = q.rd
	m.CheckingDisabled = q.cd
	if q.hasQuestion {
		m.Question = []dns.Question{{Name: q.lname, Qtype: q.qtype, Qclass: q.qclass}}
	}
	if q.edns {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(maxUDPPayload)
		if q.do {
			opt.SetDo()
		}
		m.Extra = append(m.Extra, opt)
	}
	return m
}

// answer builds the complete (untruncated) response to a well-formed QUERY.
// It returns the zone it was answered from ("" if none) and the summon error
// if the answer needed a unikernel's addresses and summon failed.
func (s *snapshot) answer(q *qinfo, tcp bool, summon summonFunc) (*dns.Msg, string, error) {
	m := newReply(q)
	if q.edns && q.ednsVersion > 0 {
		m.Rcode = dns.RcodeBadVers
		return m, "", nil
	}
	if q.qclass != dns.ClassINET && q.qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return m, "", nil
	}
	z := s.findZone(q.lname)
	if z == nil {
		m.Rcode = dns.RcodeRefused
		if opt := m.IsEdns0(); opt != nil {
			// RFC 8914 Extended DNS Error 20, as knotd does.
			opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeNotAuthoritative})
		}
		return m, "", nil
	}
	switch q.qtype {
	case dns.TypeAXFR:
		// No zone transfers (like knotd without an ACL allowing them).
		m.Rcode = dns.RcodeNotAuth
		if !tcp {
			m.Rcode = dns.RcodeNotImplemented
		}
		return m, z.origin, nil
	case dns.TypeIXFR:
		if !tcp && q.lname == z.origin && (z.tsig == nil || q.tsigOK) && z.xfr != nil && z.allowed(q.src) {
			// Over UDP, an allowed secondary gets the current SOA (RFC
			// 1995 section 2: it retries over TCP), AA clear as knotd.
			m.Answer = append(m.Answer, z.soa)
			return m, z.origin, nil
		}
		m.Rcode = dns.RcodeNotAuth
		return m, z.origin, nil
	case dns.TypeNone:
		m.Rcode = dns.RcodeNotImplemented
		return m, z.origin, nil
	}
	if err := s.resolve(z, m, q.lname, q.qtype, summon); err != nil {
		return nil, z.origin, err
	}
	return m, z.origin, nil
}

// process answers one query message req (UDP if !tcp) into out[:0]. It
// returns nil if the message is to be dropped. If mayBlock is false and the
// answer needs a summon, it returns deferred and does nothing else.
func (s *Server) process(w *worker, snap *snapshot, req []byte, tcp, mayBlock bool, out []byte) (resp []byte, deferred bool) {
	if fq, ok := parseFast(req, w); ok {
		if e := snap.cache[string(w.key)]; e != nil {
			if e.unikernel != "" && !mayBlock {
				return nil, true
			}
			if resp, ok := s.fromCache(w, snap, e, req, fq, tcp, out); ok {
				return resp, false
			}
		}
	}
	summon := w.summonFunc(s)
	if !mayBlock {
		summon = deferSummon
	}
	resp, err := s.slow(snap, req, tcp, summon, out, w.source())
	if errors.Is(err, errDefer) {
		return nil, true
	}
	return resp, false
}

func deferSummon(string) ([]netip.Addr, error) { return nil, errDefer }

// fromCache answers from a pre-encoded entry: ID, RD/CD and the question's
// case are patched in. It reports false if the slow path must answer
// (the answer does not fit the UDP size: truncation).
func (s *Server) fromCache(w *worker, snap *snapshot, e *cacheEntry, req []byte, fq fastQuery, tcp bool, out []byte) ([]byte, bool) {
	wire, counter := e.wire, e.counter
	if e.unikernel != "" {
		addrs, err := s.summon(w.source(), e.unikernel)
		if err != nil {
			resp, _ := s.slow(snap, req, tcp, func(string) ([]netip.Addr, error) { return nil, err }, out, netip.Addr{})
			return resp, true
		}
		d := e.dyn.Load()
		if d == nil || !slices.Equal(d.addrs, addrs) {
			d = s.buildDynamic(snap, e, addrs)
			if d == nil {
				return nil, false
			}
			e.dyn.Store(d)
		}
		wire, counter = d.wire, d.counter
		if !tcp && len(wire) > fq.limit {
			resp, _ := s.slow(snap, req, tcp, func(string) ([]netip.Addr, error) { return addrs, nil }, out, netip.Addr{})
			return resp, true
		}
	}
	if !tcp && len(wire) > fq.limit {
		return nil, false
	}
	out = append(out[:0], wire...)
	out[0], out[1] = req[0], req[1]
	out[2] |= req[2] & 0x01 // RD
	out[3] |= req[3] & 0x10 // CD
	copy(out[12:12+fq.nameLen], req[12:])
	counter.Inc()
	return out, true
}

// slow is the general path: full parse with miekg/dns, every error case.
// src is the client's address (for the transfer ACL; may be invalid).
func (s *Server) slow(snap *snapshot, req []byte, tcp bool, summon summonFunc, out []byte, src netip.Addr) ([]byte, error) {
	if len(req) < 12 {
		s.met.droppedShort.Inc()
		return nil, nil
	}
	if req[2]&0x80 != 0 {
		s.met.droppedResponse.Inc()
		return nil, nil
	}
	var m dns.Msg
	if err := m.Unpack(req); err != nil {
		// Header only: ID, opcode and RD copied.
		out = append(out[:0], req[0], req[1], 0x80|req[2]&0x79, dns.RcodeFormatError, 0, 0, 0, 0, 0, 0, 0, 0)
		s.met.query("", 0, dns.RcodeFormatError).Inc()
		return out, nil
	}
	q := qinfo{id: m.Id, opcode: m.Opcode, rd: m.RecursionDesired, cd: m.CheckingDisabled, src: src}
	if len(m.Question) == 1 {
		q.hasQuestion = true
		q.lname = strings.ToLower(m.Question[0].Name)
		q.qtype, q.qclass = m.Question[0].Qtype, m.Question[0].Qclass
	}
	nopt := 0
	badopt := false
	for _, rr := range m.Extra {
		if opt, ok := rr.(*dns.OPT); ok {
			nopt++
			q.edns = true
			q.udpSize = opt.UDPSize()
			q.ednsVersion = opt.Version()
			q.do = opt.Do()
			badopt = badopt || opt.Hdr.Name != "."
		}
	}
	var resp *dns.Msg
	zone := ""
	var err error
	tsig := m.IsTsig()
	var tsigKey *TSIGKey
	var reqMAC string
	tsigErr := 0
	// Like knotd: AXFR over UDP is NOTIMP, signed or not; a signed
	// transfer request from an address that may not transfer is BADKEY.
	signed := tsig != nil && q.hasQuestion && (tcp || q.qtype != dns.TypeAXFR)
	if signed {
		tsigKey, reqMAC, tsigErr = snap.checkQueryTSIG(&m, req, q.lname)
		if tsigErr == 0 && (q.qtype == dns.TypeAXFR || q.qtype == dns.TypeIXFR) && !snap.findZone(q.lname).allowed(src) {
			tsigKey, reqMAC, tsigErr = nil, "", dns.RcodeBadKey
		}
		q.tsigOK = tsigKey != nil
	}
	switch {
	case tsigErr != 0:
		resp = newReply(&q)
		resp.Rcode = dns.RcodeNotAuth
	case nopt > 1 || badopt:
		q.edns = false
		resp = newReply(&q)
		resp.Rcode = dns.RcodeFormatError
	case m.Opcode == dns.OpcodeNotify || m.Opcode == dns.OpcodeUpdate:
		// jitsu is no secondary and takes no updates: knotd answers both
		// NOTAUTH when it has no ACL allowing them.
		resp = newReply(&q)
		resp.Rcode = dns.RcodeNotAuth
	case m.Opcode != dns.OpcodeQuery:
		resp = newReply(&q)
		resp.Rcode = dns.RcodeNotImplemented
	case len(m.Question) != 1:
		q.hasQuestion = false
		resp = newReply(&q)
		resp.Rcode = dns.RcodeFormatError
	default:
		resp, zone, err = snap.answer(&q, tcp, summon)
		if errors.Is(err, errDefer) {
			return nil, err
		}
		if err != nil {
			s.summonFailed(q.lname, err)
			resp = newReply(&q)
			resp.Rcode = dns.RcodeServerFailure
		}
	}
	wire, perr := resp.PackBuffer(out[:cap(out)])
	limit := q.udpLimit()
	if signed {
		limit -= tsigReserve(tsig)
	}
	if perr == nil && !tcp && len(wire) > limit {
		// Like knotd: TC and no records at all; the client retries over TCP.
		resp.Truncated = true
		resp.Answer, resp.Ns = nil, nil
		resp.Extra = slices.DeleteFunc(resp.Extra, func(rr dns.RR) bool { return rr.Header().Rrtype != dns.TypeOPT })
		wire, perr = resp.PackBuffer(out[:cap(out)])
	}
	if perr == nil && signed {
		wire, perr = signResponse(resp, &m, tsigKey, reqMAC, tsigErr)
	} else if perr == nil && q.hasQuestion {
		patchQuestionCase(wire, req)
	}
	if perr != nil {
		s.log.Warn("pack response", zapError(perr))
		s.met.droppedPack.Inc()
		return nil, nil
	}
	s.met.query(zone, q.qtype, resp.Rcode).Inc()
	return wire, nil
}

// patchQuestionCase copies the question name's bytes of req over those of
// resp (built with the lower-case name), when both have the same length.
func patchQuestionCase(resp, req []byte) {
	n, ok := nameLen(req, 12)
	if !ok || len(resp) < 12+n {
		return
	}
	if rn, ok := nameLen(resp, 12); ok && rn == n {
		copy(resp[12:12+n], req[12:12+n])
	}
}

// nameLen returns the wire length of the uncompressed name at b[off:].
func nameLen(b []byte, off int) (int, bool) {
	i := off
	for i < len(b) {
		l := int(b[i])
		switch {
		case l == 0:
			return i + 1 - off, true
		case l > 63:
			return 0, false
		}
		i += l + 1
		if i-off > 255 {
			return 0, false
		}
	}
	return 0, false
}

// fastQuery is what parseFast learns about an ordinary query.
type fastQuery struct {
	nameLen int // wire length of the question name
	limit   int // largest UDP response the client accepts
}

// parseFast recognises the common query shape (QUERY, one IN question with
// an uncompressed name, at most an OPT without options but a COOKIE, EDNS
// version 0) and
// builds the cache key (lower-case wire name, qtype, EDNS variant) in w.key.
func parseFast(req []byte, w *worker) (fastQuery, bool) {
	var fq fastQuery
	if len(req) < 17 || req[2]&0xf8 != 0 || req[4] != 0 || req[5] != 1 ||
		req[6]|req[7]|req[8]|req[9]|req[10] != 0 || req[11] > 1 {
		return fq, false
	}
	key := w.key[:0]
	i := 12
	for {
		if i >= len(req) {
			return fq, false
		}
		l := int(req[i])
		if l == 0 {
			key = append(key, 0)
			i++
			break
		}
		if l > 63 || i+1+l > len(req) {
			return fq, false
		}
		key = append(key, byte(l))
		for _, c := range req[i+1 : i+1+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			key = append(key, c)
		}
		i += 1 + l
		if i-12 > 255 {
			return fq, false
		}
	}
	fq.nameLen = i - 12
	if i+4 > len(req) || req[i+2] != 0 || req[i+3] != 1 { // class IN
		return fq, false
	}
	key = append(key, req[i], req[i+1])
	i += 4
	variant := byte(variantNoEDNS)
	fq.limit = dns.MinMsgSize
	if req[11] == 1 {
		// OPT: root name, type 41, class = size, TTL = xrcode/version/flags,
		// no option but a well-formed COOKIE (answered by the guard).
		if i+11 > len(req) || req[i] != 0 || req[i+1] != 0 || req[i+2] != 41 ||
			req[i+6] != 0 || !fastOPTData(req[i+9:]) {
			return fq, false
		}
		size := int(req[i+3])<<8 | int(req[i+4])
		fq.limit = min(max(size, dns.MinMsgSize), maxUDPPayload)
		variant = variantEDNS
		if req[i+7]&0x80 != 0 {
			variant = variantEDNSDO
		}
	} else if i != len(req) {
		return fq, false
	}
	w.key = append(key, variant)
	return fq, true
}
