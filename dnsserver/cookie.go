package dnsserver

import (
	"crypto/rand"
	"encoding/binary"
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
// old (and at most cookieMaxSkew in the future). The secret rotates every
// cookieRotate; the previous one is still accepted, so that a cookie stays
// valid for its whole hour.
const (
	cookieVersion = 1
	cookieMaxAge  = time.Hour
	cookieMaxSkew = 5 * time.Minute
	cookieRotate  = time.Hour
	clientCookie  = 8
	serverCookie  = 16 // RFC 9018 length
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
	rotateAt  int64 // unix seconds
}

// cookieJar makes and checks server cookies. It is safe for concurrent use;
// rotation happens lazily on use.
type cookieJar struct {
	secrets atomic.Pointer[cookieSecrets]
}

func newCookieJar(now time.Time) *cookieJar {
	j := &cookieJar{}
	j.secrets.Store(&cookieSecrets{cur: randomKey(), prev: randomKey(), rotateAt: now.Add(cookieRotate).Unix()})
	return j
}

func randomKey() [2]uint64 {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return [2]uint64{binary.LittleEndian.Uint64(b[:]), binary.LittleEndian.Uint64(b[8:])}
}

// keys returns the secrets, rotating them if their time has come.
func (j *cookieJar) keys(now int64) *cookieSecrets {
	for {
		s := j.secrets.Load()
		if now < s.rotateAt {
			return s
		}
		n := &cookieSecrets{cur: randomKey(), prev: s.cur, rotateAt: now + int64(cookieRotate/time.Second)}
		if j.secrets.CompareAndSwap(s, n) {
			return n
		}
	}
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
	var buf [serverCookie]byte
	for _, k := range [2][2]uint64{s.cur, s.prev} {
		got := appendServerCookie(buf[:0], k, c[:clientCookie], client, ts)
		if string(got) == string(c[clientCookie:]) {
			return cookieValid
		}
	}
	return cookieInvalid
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
