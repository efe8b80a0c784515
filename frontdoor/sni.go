package frontdoor

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors of the name parsers.
var (
	// errNeedMore means the bytes so far are a valid prefix: read more.
	errNeedMore = errors.New("need more bytes")
	// ErrNotTLS means the first bytes are not a TLS handshake record.
	ErrNotTLS = errors.New("not a TLS handshake")
	// ErrNoSNI means a complete ClientHello carries no server_name.
	ErrNoSNI = errors.New("ClientHello without a server name")
	// ErrMalformed means the bytes break the protocol's syntax.
	ErrMalformed = errors.New("malformed")
	// ErrTooLarge means the name was not found within the byte cap.
	ErrTooLarge = errors.New("header larger than the cap")
)

const (
	recordHeaderLen     = 5
	recordTypeHandshake = 22
	maxRecordPayload    = 16384 + 2048 // TLSCiphertext limit; plaintext is 16384
	handshakeClientHell = 1
	extServerName       = 0
	sniHostName         = 0
)

// sniParser reassembles a TLS ClientHello from handshake records that may
// be split over any number of records and reads (one byte each, at
// worst), and extracts its SNI host name. Work is linear in the bytes fed:
// each record is consumed once.
type sniParser struct {
	max  int    // cap on the raw bytes (records and their headers)
	off  int    // raw bytes consumed (whole records)
	hs   []byte // handshake bytes reassembled from record payloads
	done bool
}

// feed looks at raw, all the bytes read from the connection so far (a
// growing buffer; a prefix is never changed). It returns the server name,
// lower-case without a final dot, errNeedMore, or an error.
func (p *sniParser) feed(raw []byte) (string, error) {
	if p.done {
		return "", fmt.Errorf("sni parser: fed after the end: %w", ErrMalformed)
	}
	for {
		if len(raw)-p.off < recordHeaderLen {
			break
		}
		h := raw[p.off : p.off+recordHeaderLen]
		if h[0] != recordTypeHandshake {
			if p.off == 0 {
				return "", ErrNotTLS
			}
			return "", fmt.Errorf("record type %d inside a ClientHello: %w", h[0], ErrMalformed)
		}
		if h[1] != 3 {
			if p.off == 0 {
				return "", ErrNotTLS
			}
			return "", fmt.Errorf("record version %d.%d: %w", h[1], h[2], ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(h[3:5]))
		if n == 0 || n > maxRecordPayload {
			return "", fmt.Errorf("record length %d: %w", n, ErrMalformed)
		}
		if p.off+recordHeaderLen+n > p.max {
			return "", ErrTooLarge
		}
		if len(raw)-p.off < recordHeaderLen+n {
			break
		}
		p.hs = append(p.hs, raw[p.off+recordHeaderLen:p.off+recordHeaderLen+n]...)
		p.off += recordHeaderLen + n
		if len(p.hs) >= 4 {
			if p.hs[0] != handshakeClientHell {
				return "", fmt.Errorf("handshake type %d, not ClientHello: %w", p.hs[0], ErrMalformed)
			}
			l := int(p.hs[1])<<16 | int(p.hs[2])<<8 | int(p.hs[3])
			if 4+l > p.max {
				return "", ErrTooLarge
			}
			if len(p.hs) >= 4+l {
				p.done = true
				return parseClientHello(p.hs[4 : 4+l])
			}
		}
	}
	if len(raw) >= p.max {
		return "", ErrTooLarge
	}
	if p.off == 0 && len(raw) > 0 && raw[0] != recordTypeHandshake {
		return "", ErrNotTLS
	}
	return "", errNeedMore
}

// ParseSNI returns the SNI host name of the TLS ClientHello at the start
// of data (at most max bytes are looked at), lower-case and without a
// final dot. The error is ErrNotTLS, ErrNoSNI, ErrTooLarge or wraps
// ErrMalformed; an incomplete ClientHello is ErrMalformed too.
func ParseSNI(data []byte, max int) (string, error) {
	if len(data) > max {
		data = data[:max]
	}
	p := sniParser{max: max}
	name, err := p.feed(data)
	if errors.Is(err, errNeedMore) {
		return "", fmt.Errorf("truncated ClientHello: %w", ErrMalformed)
	}
	return name, err
}

// reader is a bounds-checked cursor over a byte slice.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) bytes(n int) []byte {
	if r.bad || n < 0 || n > len(r.b) {
		r.bad = true
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() int {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (r *reader) u16() int {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(b))
}

// vec8 and vec16 read a vector with a 1- or 2-byte length prefix.
func (r *reader) vec8() []byte  { return r.bytes(r.u8()) }
func (r *reader) vec16() []byte { return r.bytes(r.u16()) }

// parseClientHello finds the host_name of the server_name extension
// (RFC 6066 section 3) in a ClientHello body.
func parseClientHello(body []byte) (string, error) {
	r := reader{b: body}
	r.bytes(2)  // legacy_version
	r.bytes(32) // random
	r.vec8()    // legacy_session_id
	r.vec16()   // cipher_suites
	r.vec8()    // legacy_compression_methods
	if r.bad {
		return "", fmt.Errorf("ClientHello body: %w", ErrMalformed)
	}
	if len(r.b) == 0 {
		return "", ErrNoSNI // no extensions at all
	}
	exts := reader{b: r.vec16()}
	if r.bad {
		return "", fmt.Errorf("ClientHello extensions: %w", ErrMalformed)
	}
	for len(exts.b) > 0 {
		typ := exts.u16()
		data := exts.vec16()
		if exts.bad {
			return "", fmt.Errorf("ClientHello extension: %w", ErrMalformed)
		}
		if typ != extServerName {
			continue
		}
		list := reader{b: data}
		names := reader{b: list.vec16()}
		if list.bad || len(list.b) != 0 {
			return "", fmt.Errorf("server_name extension: %w", ErrMalformed)
		}
		for len(names.b) > 0 {
			kind := names.u8()
			name := names.vec16()
			if names.bad {
				return "", fmt.Errorf("server_name entry: %w", ErrMalformed)
			}
			if kind == sniHostName {
				return checkName(string(name))
			}
		}
		return "", ErrNoSNI
	}
	return "", ErrNoSNI
}

// checkName validates a host name (letters, digits, '-', '_', '.', at most
// 253 characters, labels of 1 to 63) and returns it lower-case without a
// final dot.
func checkName(s string) (string, error) {
	if len(s) > 0 && s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	if len(s) == 0 || len(s) > 253 {
		return "", fmt.Errorf("host name of %d bytes: %w", len(s), ErrMalformed)
	}
	b := []byte(s)
	label := 0
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.':
			if label == 0 {
				return "", fmt.Errorf("empty label in host name %q: %w", s, ErrMalformed)
			}
			label = 0
			continue
		default:
			return "", fmt.Errorf("byte %#x in host name %q: %w", c, s, ErrMalformed)
		}
		label++
		if label > 63 {
			return "", fmt.Errorf("label longer than 63 in host name %q: %w", s, ErrMalformed)
		}
	}
	return string(b), nil
}
