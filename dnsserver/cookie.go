package dnsserver

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"sync/atomic"
	"time"
)

// DNS cookies (RFC 7873) with the interoperable server cookie of RFC 9018:
//
//	server cookie = Version (1) | Reserved (3) | Timestamp (4) | Hash (8)
//	Hash = SipHash-2-4(secret, ClientCookie | Version | Reserved | Timestamp | Client-IP)
//
// A server cookie is accepted while its timestamp is at most cookieMaxAge
// old (and at most cookieMaxSkew in the future).
//
// Without a shared secret (Options.CookieSecret) the SipHash key is random
// per process and rotates every cookieRotate; the previous one is still
// accepted, so that a cookie stays valid for its whole hour.
//
// With a shared secret S (128 bits, the same file on every jitsu of an
// anycast set, or kept across restarts), the key of rotation epoch
// e = floor(unix time / cookieRotate) is derived from S and e:
//
//	K(e) = SipHash-2-4(S, "jitsu-cookie-key" | e | 0) | SipHash-2-4(S, "jitsu-cookie-key" | e | 1)
//
// (e as 8 bytes big-endian, each half a little-endian uint64). A cookie is
// made with K(epoch of now) and checked with K(epoch of its timestamp),
// which the hash authenticates: daemons with the same secret agree on
// every epoch's key without talking, and each accepts the others' cookies
// for their whole hour, across a rotation and with clocks up to
// cookieMaxSkew apart. This is RFC 9018's three-stage rollover done by the
// clock: the next key is known to all before any uses it, every server
// switches at the epoch boundary, and the previous key verifies until the
// last cookie made with it has expired.
const (
	cookieVersion = 1
	cookieMaxAge  = time.Hour
	cookieMaxSkew = 5 * time.Minute
	cookieRotate  = time.Hour
	clientCookie  = 8
	serverCookie  = 16 // RFC 9018 length
	// CookieSecretLen is the length of Options.CookieSecret: 128 bits.
	CookieSecretLen = 16
	cookieKeyLabel  = "jitsu-cookie-key"
)

// Cookie states, as counted in jitsu_dns_cookies_total.
const (
	cookieNone      = iota // no COOKIE option
	cookieClient           // a client cookie only: first contact
	cookieValid            // a server cookie we made, younger than an hour
	cookieInvalid          // a server cookie that is stale, forged or another server's
	cookieMalformed        // impossible length: FORMERR
	numCookieStates
)

var cookieStateNames = [numCookieStates]string{"none", "client_only", "valid", "invalid", "malformed"}

// cookieSecrets are the current and previous SipHash keys.
type cookieSecrets struct {
	cur, prev [2]uint64
	from      int64 // unix seconds: cur is valid from (shared secret: its epoch's start)
	rotateAt  int64 // unix seconds
	epoch     int64 // shared secret: cur is K(epoch), prev K(epoch-1)
}

// cookieJar makes and checks server cookies. It is safe for concurrent use;
// rotation happens lazily on use.
type cookieJar struct {
	secrets atomic.Pointer[cookieSecrets]
	shared  *[2]uint64 // the shared secret as a SipHash key; nil: random keys
}

// newCookieJar returns a jar with random keys, or with keys derived from
// secret (CookieSecretLen bytes) when it is not nil.
func newCookieJar(now time.Time, secret []byte) (*cookieJar, error) {
	j := &cookieJar{}
	if secret == nil {
		j.secrets.Store(&cookieSecrets{cur: randomKey(), prev: randomKey(), rotateAt: now.Add(cookieRotate).Unix()})
		return j, nil
	}
	if len(secret) != CookieSecretLen {
		return nil, fmt.Errorf("cookie secret of %d bytes, want %d", len(secret), CookieSecretLen)
	}
	j.shared = &[2]uint64{binary.LittleEndian.Uint64(secret), binary.LittleEndian.Uint64(secret[8:])}
	j.secrets.Store(j.epochSecrets(cookieEpoch(now.Unix())))
	return j, nil
}

func randomKey() [2]uint64 {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return [2]uint64{binary.LittleEndian.Uint64(b[:]), binary.LittleEndian.Uint64(b[8:])}
}

// cookieEpoch is the rotation epoch of unix time t.
func cookieEpoch(t int64) int64 {
	r := int64(cookieRotate / time.Second)
	e := t / r
	if t < 0 && t%r != 0 {
		e--
	}
	return e
}

// epochKey derives the key of epoch e from the shared secret.
func (j *cookieJar) epochKey(e int64) [2]uint64 {
	var b [len(cookieKeyLabel) + 9]byte
	n := copy(b[:], cookieKeyLabel)
	binary.BigEndian.PutUint64(b[n:], uint64(e))
	k0 := siphash24(j.shared[0], j.shared[1], b[:])
	b[len(b)-1] = 1
	return [2]uint64{k0, siphash24(j.shared[0], j.shared[1], b[:])}
}

// epochSecrets are the shared secret's keys of epoch e and the one before.
func (j *cookieJar) epochSecrets(e int64) *cookieSecrets {
	r := int64(cookieRotate / time.Second)
	return &cookieSecrets{cur: j.epochKey(e), prev: j.epochKey(e - 1), from: e * r, rotateAt: (e + 1) * r, epoch: e}
}

// keys returns the secrets, rotating them if their time has come.
func (j *cookieJar) keys(now int64) *cookieSecrets {
	for {
		s := j.secrets.Load()
		if now < s.rotateAt && now >= s.from {
			return s
		}
		var n *cookieSecrets
		if j.shared != nil {
			n = j.epochSecrets(cookieEpoch(now))
		} else {
			n = &cookieSecrets{cur: randomKey(), prev: s.cur, rotateAt: now + int64(cookieRotate/time.Second)}
		}
		if j.secrets.CompareAndSwap(s, n) {
			return n
		}
	}
}

// sharedKey returns the shared secret's key of epoch e, from s when it
// has it.
func (j *cookieJar) sharedKey(s *cookieSecrets, e int64) [2]uint64 {
	switch e {
	case s.epoch:
		return s.cur
	case s.epoch - 1:
		return s.prev
	}
	return j.epochKey(e) // a peer whose clock runs a little ahead made it
}

// make returns the full cookie (client | server) for the client cookie cc
// and the client's address at time now, appended to dst.
func (j *cookieJar) make(dst, cc []byte, client netip.Addr, now int64) []byte {
	return appendServerCookie(append(dst, cc...), j.keys(now).cur, cc, client, uint32(now))
}

func appendServerCookie(dst []byte, key [2]uint64, cc []byte, client netip.Addr, ts uint32) []byte {
	var buf [clientCookie + 8 + 16]byte
	n := copy(buf[:], cc)
	buf[n] = cookieVersion
	binary.BigEndian.PutUint32(buf[n+4:], ts)
	n += 8
	if client.Is4() {
		a := client.As4()
		n += copy(buf[n:], a[:])
	} else {
		a := client.As16()
		n += copy(buf[n:], a[:])
	}
	h := siphash24(key[0], key[1], buf[:n])
	dst = append(dst, buf[clientCookie:clientCookie+8]...)
	return binary.LittleEndian.AppendUint64(dst, h)
}

// check classifies the COOKIE option data c sent by client at time now.
func (j *cookieJar) check(c []byte, malformed bool, client netip.Addr, now int64) int {
	switch {
	case c == nil:
		return cookieNone
	case malformed:
		return cookieMalformed
	case len(c) == clientCookie:
		return cookieClient
	case len(c) != clientCookie+serverCookie || c[clientCookie] != cookieVersion:
		return cookieInvalid
	}
	ts := binary.BigEndian.Uint32(c[clientCookie+4:])
	age := int64(int32(uint32(now) - ts)) // serial arithmetic (RFC 1982)
	if age > int64(cookieMaxAge/time.Second) || -age > int64(cookieMaxSkew/time.Second) {
		return cookieInvalid
	}
	s := j.keys(now)
	cc := c[:clientCookie]
	var ok bool
	if j.shared != nil { // the key of the epoch the cookie was made in
		ok = matches(c, j.sharedKey(s, cookieEpoch(now-age)), cc, client, ts)
	} else {
		ok = matches(c, s.cur, cc, client, ts) || matches(c, s.prev, cc, client, ts)
	}
	if ok {
		return cookieValid
	}
	return cookieInvalid
}

// matches reports whether the full cookie c carries the server cookie key
// makes for the client cookie cc, client and ts.
func matches(c []byte, key [2]uint64, cc []byte, client netip.Addr, ts uint32) bool {
	var buf [serverCookie]byte
	return string(appendServerCookie(buf[:0], key, cc, client, ts)) == string(c[clientCookie:])
}

// siphash24 is SipHash-2-4 (Aumasson and Bernstein) of p with the key
// (k0, k1), each the little-endian reading of 8 key bytes.
func siphash24(k0, k1 uint64, p []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	b := uint64(len(p)) << 56
	for ; len(p) >= 8; p = p[8:] {
		m := binary.LittleEndian.Uint64(p)
		v3 ^= m
		round()
		round()
		v0 ^= m
	}
	for i, c := range p {
		b |= uint64(c) << (8 * i)
	}
	v3 ^= b
	round()
	round()
	v0 ^= b
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}
