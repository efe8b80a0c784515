package dnsserver

import "encoding/binary"

// Wire-format helpers for the response guard (RRL and cookies): they read
// and patch messages in place, without a full parse.

const (
	typeOPT      = 41
	typeTSIG     = 250
	optionCookie = 10 // EDNS option code of COOKIE (RFC 7873)
	hdrLen       = 12
	maxNamePtrs  = 32 // compression pointers followed per name
)

// skipName returns the offset just past the (possibly compressed) name at
// b[off:].
func skipName(b []byte, off int) (int, bool) {
	for n := 0; off < len(b) && n <= 255; n++ {
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1, true
		case l&0xc0 == 0xc0:
			if off+2 > len(b) {
				return 0, false
			}
			return off + 2, true
		case l > 63:
			return 0, false
		}
		off += 1 + l
	}
	return 0, false
}

// appendLowerName appends the (possibly compressed) name at b[off:] to dst
// in wire form, lower-cased, and reports whether it was well-formed.
func appendLowerName(dst, b []byte, off int) ([]byte, bool) {
	for ptrs := 0; off < len(b); {
		l := int(b[off])
		switch {
		case l == 0:
			return append(dst, 0), true
		case l&0xc0 == 0xc0:
			if off+2 > len(b) || ptrs >= maxNamePtrs {
				return dst, false
			}
			ptrs++
			off = int(binary.BigEndian.Uint16(b[off:]) & 0x3fff)
			continue
		case l > 63 || off+1+l > len(b) || len(dst)+1+l > 255:
			return dst, false
		}
		dst = append(dst, byte(l))
		for _, c := range b[off+1 : off+1+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
		}
		off += 1 + l
	}
	return dst, false
}

// msgLayout is where a message's sections and its OPT record are.
type msgLayout struct {
	qd, an, ns, ar int
	qEnd           int // offset just past the question section
	nsStart        int // offset of the authority section
	optStart       int // offset of the OPT RR's owner name; -1 if none
	optRData       int // offset of the OPT RR's RDATA
	optRDLen       int
	signed         bool // a TSIG record in the additional section
}

// layout walks msg's sections. It reports false if msg is cut short or
// malformed (records past the last are ignored).
func layout(msg []byte) (msgLayout, bool) {
	var l msgLayout
	l.optStart = -1
	if len(msg) < hdrLen {
		return l, false
	}
	l.qd = int(binary.BigEndian.Uint16(msg[4:]))
	l.an = int(binary.BigEndian.Uint16(msg[6:]))
	l.ns = int(binary.BigEndian.Uint16(msg[8:]))
	l.ar = int(binary.BigEndian.Uint16(msg[10:]))
	off := hdrLen
	var ok bool
	for range l.qd {
		if off, ok = skipName(msg, off); !ok || off+4 > len(msg) {
			return l, false
		}
		off += 4
	}
	l.qEnd = off
	for i := range l.an + l.ns + l.ar {
		if i == l.an {
			l.nsStart = off
		}
		start := off
		if off, ok = skipName(msg, off); !ok || off+10 > len(msg) {
			return l, false
		}
		typ := binary.BigEndian.Uint16(msg[off:])
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		if off+10+rdlen > len(msg) {
			return l, false
		}
		if i >= l.an+l.ns && typ == typeTSIG {
			l.signed = true
		}
		if i >= l.an+l.ns && typ == typeOPT && l.optStart < 0 {
			l.optStart, l.optRData, l.optRDLen = start, off+10, rdlen
		}
		off += 10 + rdlen
	}
	if l.an == l.an+l.ns+l.ar {
		l.nsStart = off
	}
	return l, true
}

// reqEDNS is what the guard needs from a query's OPT record.
type reqEDNS struct {
	present   bool
	size      uint16 // advertised UDP payload size
	do        bool
	cookie    []byte // COOKIE option data (in the request), nil if none
	malformed bool   // a COOKIE option of an impossible length
}

// parseReqEDNS finds the query's OPT record and its COOKIE option.
func parseReqEDNS(req []byte) reqEDNS {
	var e reqEDNS
	if len(req) < hdrLen || req[10]|req[11] == 0 {
		return e
	}
	l, ok := layout(req)
	if !ok || l.optStart < 0 {
		return e
	}
	fixed := l.optRData - 10 // type, class, TTL, RDLEN
	e.present = true
	e.size = binary.BigEndian.Uint16(req[fixed+2:])
	e.do = req[fixed+6]&0x80 != 0
	opts := req[l.optRData : l.optRData+l.optRDLen]
	for len(opts) >= 4 {
		code := binary.BigEndian.Uint16(opts)
		n := int(binary.BigEndian.Uint16(opts[2:]))
		if 4+n > len(opts) {
			break
		}
		if code == optionCookie && e.cookie == nil {
			e.cookie = opts[4 : 4+n : 4+n]
			// RFC 7873 §5.2.2: client cookie 8 bytes, server cookie 8-32.
			e.malformed = n != 8 && (n < 16 || n > 40)
		}
		opts = opts[4+n:]
	}
	return e
}

// udpLimit is the largest UDP answer the query accepts.
func (e *reqEDNS) udpLimit() int {
	if !e.present {
		return 512
	}
	return int(min(max(e.size, 512), maxUDPPayload))
}

// appendOPT appends an OPT record (our payload size, the DO bit, the given
// extended rcode bits and an optional COOKIE option) to msg and counts it.
func appendOPT(msg []byte, do bool, extRcode byte, cookie []byte) []byte {
	msg = append(msg, 0, 0, typeOPT, byte(maxUDPPayload>>8), byte(maxUDPPayload&0xff), extRcode, 0, 0, 0)
	if do {
		msg[len(msg)-2] = 0x80
	}
	if len(cookie) == 0 {
		msg = append(msg, 0, 0)
	} else {
		n := 4 + len(cookie)
		msg = append(msg, byte(n>>8), byte(n), 0, optionCookie, byte(len(cookie)>>8), byte(len(cookie)))
		msg = append(msg, cookie...)
	}
	ar := binary.BigEndian.Uint16(msg[10:]) + 1
	binary.BigEndian.PutUint16(msg[10:], ar)
	return msg
}

// reduce rewrites resp in place to its header and question with no records
// (and a fresh OPT with cookie if e.present): the form of a slipped (TC) or
// BADCOOKIE answer. rcode is the full (extended) response code.
func reduce(resp []byte, l msgLayout, e *reqEDNS, tc bool, rcode int, cookie []byte) []byte {
	out := resp[:l.qEnd]
	binary.BigEndian.PutUint16(out[6:], 0)
	binary.BigEndian.PutUint16(out[8:], 0)
	binary.BigEndian.PutUint16(out[10:], 0)
	if tc {
		out[2] |= 0x02
	}
	out[3] = out[3]&0xf0 | byte(rcode&0x0f)
	if e.present {
		out = appendOPT(out, e.do, byte(rcode>>4), cookie)
	}
	return out
}

// insertOption adds an EDNS option to resp's OPT record (at l) and returns
// the new message (resp's array is reused when it has room).
func insertOption(resp []byte, l msgLayout, code uint16, data []byte) []byte {
	end := l.optRData + l.optRDLen
	n := 4 + len(data)
	resp = append(resp, make([]byte, n)...)
	copy(resp[end+n:], resp[end:len(resp)-n])
	binary.BigEndian.PutUint16(resp[end:], code)
	binary.BigEndian.PutUint16(resp[end+2:], uint16(len(data)))
	copy(resp[end+4:], data)
	binary.BigEndian.PutUint16(resp[l.optRData-2:], uint16(l.optRDLen+n))
	return resp
}

// fastOPTData reports whether b, an OPT record's RDLENGTH and all that
// follows it to the end of the query, is empty or one well-formed COOKIE
// option: such a query takes the fast path (the answer does not depend on
// it; the guard adds the cookie).
func fastOPTData(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	rdlen := int(binary.BigEndian.Uint16(b))
	if rdlen == 0 || len(b) != 2+rdlen {
		return rdlen == 0 && len(b) == 2
	}
	if rdlen < 4 || binary.BigEndian.Uint16(b[2:]) != optionCookie {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[4:]))
	return 4+n == rdlen && (n == clientCookie || n >= 16 && n <= 40)
}
