package dnsserver

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// xfrMsgSize is the size a transfer message is filled up to (RFC 5936
// allows 64 KiB; smaller messages keep a lost segment cheap).
const xfrMsgSize = 16 << 10

// tsigFudge is the clock skew allowed by the TSIG records we sign.
const tsigFudge = 300

// isTransfer reports whether req is a query for AXFR or IXFR, reading only
// its header and question.
func isTransfer(req []byte) bool {
	if len(req) < 12 || req[2]&0x80 != 0 || req[2]&0x78 != 0 || req[4] != 0 || req[5] != 1 {
		return false
	}
	n, ok := nameLen(req, 12)
	if !ok || len(req) < 12+n+2 {
		return false
	}
	t := binary.BigEndian.Uint16(req[12+n:])
	return t == dns.TypeAXFR || t == dns.TypeIXFR
}

// serveTransfer answers an AXFR or IXFR request over TCP from an allowed
// secondary: the zone in as many messages as it takes, signed with the
// zone's TSIG key when it has one. It reports false when the request is
// not one it serves (not a transfer, not from a secondary of the zone...):
// the ordinary path then answers it (NOTAUTH, as knotd). A non-nil error
// means the connection must be closed.
func (s *Server) serveTransfer(c net.Conn, snap *snapshot, req []byte) (bool, error) {
	if !isTransfer(req) {
		return false, nil
	}
	var q dns.Msg
	if err := q.Unpack(req); err != nil || len(q.Question) != 1 || q.Question[0].Qclass != dns.ClassINET {
		return false, nil
	}
	src := addrOf(c.RemoteAddr())
	z := snap.zones[strings.ToLower(q.Question[0].Name)]
	if z == nil || z.xfr == nil || !z.allowed(src) {
		return false, nil
	}
	qt := q.Question[0].Qtype
	var have uint32
	if qt == dns.TypeIXFR {
		if len(q.Ns) != 1 || q.Ns[0].Header().Rrtype != dns.TypeSOA {
			return false, nil
		}
		have = q.Ns[0].(*dns.SOA).Serial
	}
	reqMAC, tsigErr := z.checkTSIG(&q, req)
	if tsigErr != 0 {
		if tsigErr != dns.RcodeBadTime {
			reqMAC = ""
		}
		s.log.Info("zone transfer refused: bad TSIG", zap.String("zone", z.origin),
			zap.Stringer("from", src), zap.String("error", dns.RcodeToString[tsigErr]))
		s.met.transfers.WithLabelValues(z.origin, dns.TypeToString[qt], xfrBadTSIG).Inc()
		return true, s.writeTSIGError(c, &q, z, tsigErr, reqMAC)
	}
	if reqMAC == "" && z.tsig != nil {
		return false, nil // unsigned: NOTAUTH
	}
	rrs, kind := z.xfr.transfer(qt == dns.TypeIXFR, have)
	s.log.Info("zone transfer", zap.String("zone", z.origin), zap.Stringer("from", src),
		zap.String("type", dns.TypeToString[qt]), zap.String("result", kind), zap.Uint32("from_serial", have),
		zap.Uint32("serial", z.xfr.soa.Serial), zap.Int("records", len(rrs)))
	s.met.transfers.WithLabelValues(z.origin, dns.TypeToString[qt], kind).Inc()
	s.met.query(z.origin, qt, dns.RcodeSuccess).Inc()
	mac := reqMAC
	for first := true; first || len(rrs) > 0; first = false {
		m := new(dns.Msg)
		m.SetReply(&q)
		m.Authoritative = true
		m.Compress = true
		size := 12 + len(req) // header and question, roughly
		k := 0
		for k < len(rrs) && (k == 0 || size+dns.Len(rrs[k]) < xfrMsgSize) {
			size += dns.Len(rrs[k])
			k++
		}
		m.Answer, rrs = rrs[:k], rrs[k:]
		var wire []byte
		var err error
		if z.tsig != nil {
			m.SetTsig(z.tsig.Name, z.tsig.Algorithm, tsigFudge, time.Now().Unix())
			wire, mac, err = dns.TsigGenerate(m, z.tsig.Secret, mac, !first)
		} else {
			wire, err = m.Pack()
		}
		if err != nil {
			s.log.Warn("zone transfer: pack", zap.String("zone", z.origin), zap.Error(err))
			return true, err
		}
		if err := writeTCPMsg(c, wire); err != nil {
			return true, err
		}
	}
	return true, nil
}

// checkTSIG checks the TSIG record of q (wire form req) against z's key.
// It returns the request's MAC ("" if unsigned, or if it did not verify)
// and the TSIG error to answer with (0 if none): BADKEY for a key other
// than z's (or any key when z has none), BADSIG for a wrong MAC, BADTIME
// outside the fudge (the MAC verified: it is returned, the answer is
// signed).
func (z *zoneData) checkTSIG(q *dns.Msg, req []byte) (string, int) {
	t := q.IsTsig()
	if t == nil {
		return "", 0
	}
	if z.tsig == nil || !strings.EqualFold(t.Hdr.Name, z.tsig.Name) || dns.CanonicalName(t.Algorithm) != z.tsig.Algorithm {
		return "", dns.RcodeBadKey
	}
	if err := dns.TsigVerify(req, z.tsig.Secret, "", false); err != nil {
		if errors.Is(err, dns.ErrTime) {
			return t.MAC, dns.RcodeBadTime
		}
		return "", dns.RcodeBadSig
	}
	return t.MAC, 0
}

// checkQueryTSIG checks the TSIG record of a query (other than a transfer
// over TCP) for lname against its zone's key. It returns the key and the
// request's MAC when it verifies, else the TSIG error to answer with.
func (s *snapshot) checkQueryTSIG(q *dns.Msg, req []byte, lname string) (*TSIGKey, string, int) {
	z := s.findZone(lname)
	if z == nil {
		return nil, "", dns.RcodeBadKey
	}
	mac, tsigErr := z.checkTSIG(q, req)
	if tsigErr == dns.RcodeBadTime {
		return z.tsig, mac, tsigErr // answered signed
	}
	if tsigErr != 0 {
		return nil, "", tsigErr
	}
	return z.tsig, mac, 0
}

// tsigReserve is room for the TSIG record of an answer to a query signed
// with t: name, fixed fields, a MAC of up to 64 bytes (SHA-512).
func tsigReserve(t *dns.TSIG) int { return len(t.Hdr.Name) + len(t.Algorithm) + 2 + 10 + 16 + 64 }

// signResponse packs resp, the answer to the signed query q, with a TSIG
// record: signed with key after the request's MAC, or unsigned carrying
// tsigErr (BADKEY, BADSIG) when the request did not verify. The question
// keeps the query's case (patching it later would break the MAC).
func signResponse(resp, q *dns.Msg, key *TSIGKey, reqMAC string, tsigErr int) ([]byte, error) {
	t := q.IsTsig()
	if len(resp.Question) == 1 && len(q.Question) == 1 {
		resp.Question[0].Name = q.Question[0].Name
	}
	resp.SetTsig(t.Hdr.Name, t.Algorithm, tsigFudge, time.Now().Unix())
	rt := resp.IsTsig()
	rt.Error = uint16(tsigErr)
	rt.OrigId = q.Id
	secret := ""
	if key != nil && (tsigErr == 0 || tsigErr == dns.RcodeBadTime) {
		secret = key.Secret
	}
	wire, _, err := dns.TsigGenerate(resp, secret, reqMAC, false)
	return wire, err
}

// writeTSIGError answers q NOTAUTH with a TSIG record carrying tsigErr
// (RFC 8945 section 5.3.2): unsigned for BADKEY and BADSIG, signed after
// reqMAC for BADTIME.
func (s *Server) writeTSIGError(c net.Conn, q *dns.Msg, z *zoneData, tsigErr int, reqMAC string) error {
	m := new(dns.Msg)
	m.SetRcode(q, dns.RcodeNotAuth)
	wire, err := signResponse(m, q, z.tsig, reqMAC, tsigErr)
	if err != nil {
		return err
	}
	s.met.query(z.origin, q.Question[0].Qtype, dns.RcodeNotAuth).Inc()
	return writeTCPMsg(c, wire)
}

// writeTCPMsg writes one length-prefixed message.
func writeTCPMsg(c net.Conn, wire []byte) error {
	if len(wire) > 0xffff {
		return errors.New("message too large for TCP")
	}
	buf := make([]byte, 2+len(wire))
	binary.BigEndian.PutUint16(buf, uint16(len(wire)))
	copy(buf[2:], wire)
	_ = c.SetWriteDeadline(time.Now().Add(tcpIdleTimeout))
	_, err := c.Write(buf)
	return err
}
