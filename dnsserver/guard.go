package dnsserver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The guard sits between the handler and the socket: it answers DNS
// cookies and applies response-rate limiting to UDP answers.

const (
	rcodeFormErr   = 1
	rcodeBadCookie = 23 // RFC 7873
)

// hardening is the server's guard state (zero value: everything off).
type hardening struct {
	rrl     *rrlTable
	cookies *cookieJar
	met     *guardMetrics
	now     func() time.Time
	tcp     *tcpSlots
	delay   *delayer
}

// guardScratch is per-worker scratch space of the guard.
type guardScratch struct {
	cookie []byte
	name   []byte
	hash   []byte
}

// guardMetrics are the guard's counters, children resolved.
type guardMetrics struct {
	rrl        *prometheus.CounterVec
	rrlClass   *prometheus.CounterVec
	cookies    *prometheus.CounterVec
	badCookie  prometheus.Counter
	delayed    *prometheus.CounterVec
	tcpEvicted prometheus.Counter
	limited    [numRRLClasses]prometheus.Counter
	slipped    prometheus.Counter
	dropped    prometheus.Counter
	exempt     prometheus.Counter
	cookieSeen [numCookieStates]prometheus.Counter
}

func newGuardMetrics(reg prometheus.Registerer) (*guardMetrics, error) {
	m := &guardMetrics{
		rrl: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_dns_rrl_total",
			Help: "UDP responses over the rate limit, by action: slipped (sent truncated, or BADCOOKIE to a client with a cookie), dropped; exempt counts answers not limited thanks to a valid server cookie.",
		}, []string{"action"}),
		rrlClass: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_dns_rrl_limited_total",
			Help: "UDP responses over the rate limit (slipped or dropped), by response class.",
		}, []string{"class"}),
		cookies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_dns_cookies_total",
			Help: "Queries by DNS cookie state: none, client_only, valid, invalid, malformed (answered FORMERR).",
		}, []string{"state"}),
		badCookie: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitsu_dns_badcookie_total",
			Help: "BADCOOKIE answers sent (a rate-limited client that sent a cookie gets a fresh server cookie).",
		}),
		tcpEvicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitsu_dns_tcp_evicted_total",
			Help: "Idle TCP connections closed to make room for a new one (all slots, or the source's, taken).",
		}),
		delayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_dns_delayed_total",
			Help: "UDP queries for a booting unikernel under response_delay: parked until it is ready, or answered at once because the lists were full (list_full).",
		}, []string{"result"}),
	}
	if reg != nil {
		var err error
		if m.delayed, err = register(reg, m.delayed); err != nil {
			return nil, err
		}
		if m.tcpEvicted, err = register(reg, m.tcpEvicted); err != nil {
			return nil, err
		}
		if m.rrl, err = register(reg, m.rrl); err != nil {
			return nil, err
		}
		if m.rrlClass, err = register(reg, m.rrlClass); err != nil {
			return nil, err
		}
		if m.cookies, err = register(reg, m.cookies); err != nil {
			return nil, err
		}
		if m.badCookie, err = register(reg, m.badCookie); err != nil {
			return nil, err
		}
	}
	for c := range numRRLClasses {
		m.limited[c] = m.rrlClass.WithLabelValues(rrlClassNames[c])
	}
	for st := range numCookieStates {
		m.cookieSeen[st] = m.cookies.WithLabelValues(cookieStateNames[st])
	}
	m.slipped = m.rrl.WithLabelValues("slipped")
	m.dropped = m.rrl.WithLabelValues("dropped")
	m.exempt = m.rrl.WithLabelValues("exempt")
	return m, nil
}

// initHardening sets up the guard from opts.
func (s *Server) initHardening(opts Options) error {
	h := &s.hard
	h.now = time.Now
	met, err := newGuardMetrics(opts.Registerer)
	if err != nil {
		return err
	}
	h.met = met
	if opts.RRL.Rate < 0 || opts.RRL.Slip < 0 || opts.RRL.Window < 0 {
		return errors.New("RRL: negative rate, slip or window")
	}
	if opts.RRL.Rate > 0 {
		h.rrl = newRRLTable(opts.RRL)
	}
	if opts.Cookies {
		if h.cookies, err = newCookieJar(time.Now(), opts.CookieSecret); err != nil {
			return fmt.Errorf("DNS cookies: %w", err)
		}
	} else if opts.CookieSecret != nil {
		return errors.New("a cookie secret without cookies")
	}
	if opts.ResponseDelay < 0 {
		return fmt.Errorf("negative response delay %s", opts.ResponseDelay)
	}
	h.tcp = newTCPSlots(tcpMaxConns, tcpMaxPerSource, tcpIdleTimeout)
	h.tcp.evicted = met.tcpEvicted
	h.delay = newDelayer(s, opts.ResponseDelay)
	return nil
}

// addrOf returns the IP address of a UDP or TCP peer (invalid otherwise).
func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	default:
		return netip.Addr{}
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}

// guard applies DNS cookies and RRL to resp, the answer to req from src
// over UDP (or TCP: cookies only, no rate limit). It returns the message to
// send, nil for none; resp's array may be reused.
func (s *Server) guard(w *worker, req, resp []byte, src net.Addr, tcp bool) []byte {
	h := &s.hard
	if resp == nil || h.rrl == nil && h.cookies == nil {
		return resp
	}
	l, ok := layout(resp)
	if !ok {
		return resp // our own answer: cannot happen
	}
	addr := addrOf(src)
	now := h.now()
	var e reqEDNS
	state := cookieNone
	var cookie []byte
	if h.cookies != nil {
		e = parseReqEDNS(req)
		state = h.cookies.check(e.cookie, e.malformed, addr, now.Unix())
		h.met.cookieSeen[state].Inc()
		switch {
		case state == cookieMalformed:
			// RFC 7873 §5.2.2.
			return reduce(resp, l, &e, false, rcodeFormErr, nil)
		case state != cookieNone && e.present:
			w.g.cookie = h.cookies.make(w.g.cookie[:0], e.cookie[:clientCookie], addr, now.Unix())
			cookie = w.g.cookie
		}
	}
	if !tcp && h.rrl != nil {
		if state == cookieValid {
			h.met.exempt.Inc()
		} else {
			class, name := classify(resp, l, w.g.name[:0])
			if class == rrlNormal || class == rrlLarge {
				if zone := s.snap.Load().wildcardZone(name, w.key); zone != "" {
					class, name = rrlWildcard, append(name[:0], zone...)
				}
			}
			w.g.name = name
			var k uint64
			k, w.g.hash = h.rrl.key(class, addr, name, w.g.hash)
			switch h.rrl.account(k, now) {
			case rrlDrop:
				h.met.limited[class].Inc()
				h.met.dropped.Inc()
				return nil
			case rrlSlip:
				h.met.limited[class].Inc()
				h.met.slipped.Inc()
				if cookie != nil {
					// RFC 7873 §5.2.3: the client sent a cookie; a
					// BADCOOKIE with a fresh server cookie lets it come
					// back exempt.
					h.met.badCookie.Inc()
					return reduce(resp, l, &e, false, rcodeBadCookie, cookie)
				}
				if h.cookies == nil {
					e = parseReqEDNS(req) // keep EDNS in the truncated answer
				}
				return reduce(resp, l, &e, true, fullRcode(resp, l), cookie)
			}
		}
	}
	if cookie != nil && l.optStart >= 0 && !l.signed {
		// (A TSIG-signed answer stays as signed: its MAC covers the OPT.)
		resp = insertOption(resp, l, optionCookie, cookie)
		if !tcp && len(resp) > e.udpLimit() {
			l, _ = layout(resp)
			resp = reduce(resp, l, &e, true, fullRcode(resp, l), cookie)
		}
	}
	return resp
}

// fullRcode is resp's response code, with the OPT record's extended bits.
func fullRcode(resp []byte, l msgLayout) int {
	rc := int(resp[3] & 0x0f)
	if l.optStart >= 0 {
		rc |= int(resp[l.optRData-6]) << 4
	}
	return rc
}
