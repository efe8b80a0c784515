package dnsserver

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestSipHash24(t *testing.T) {
	// The reference vector of the SipHash paper (Appendix A).
	msg := make([]byte, 15)
	for i := range msg {
		msg[i] = byte(i)
	}
	k0 := uint64(0x0706050403020100)
	k1 := uint64(0x0f0e0d0c0b0a0908)
	if got := siphash24(k0, k1, msg); got != 0xa129ca6149be45e5 {
		t.Fatalf("siphash24 = %#x, want 0xa129ca6149be45e5", got)
	}
}

// TestServerCookieRFC9018 checks the first test vector of RFC 9018
// Appendix A (A.1, learning a new server cookie).
func TestServerCookieRFC9018(t *testing.T) {
	secret, _ := hex.DecodeString("e5e973e5a6b2a43f48e7dc849e37bfcf")
	key := [2]uint64{binary.LittleEndian.Uint64(secret), binary.LittleEndian.Uint64(secret[8:])}
	for _, tc := range []struct {
		client, ip string
		ts         uint32
		want       string
	}{
		{"2464c4abcf10c957", "198.51.100.100", 1559731985, "010000005cf79f111f8130c3eee29480"},
	} {
		cc, _ := hex.DecodeString(tc.client)
		got := hex.EncodeToString(appendServerCookie(nil, key, cc, netip.MustParseAddr(tc.ip), tc.ts))
		if got != tc.want {
			t.Errorf("server cookie for %s from %s at %d = %s, want %s", tc.client, tc.ip, tc.ts, got, tc.want)
		}
	}
}

func TestCookieCheck(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	j, _ := newCookieJar(now, nil)
	client := netip.MustParseAddr("192.0.2.1")
	cc := []byte("clientck")
	valid := j.make(nil, cc, client, now.Unix())
	stale := j.make(nil, cc, client, now.Add(-61*time.Minute).Unix())
	future := j.make(nil, cc, client, now.Add(10*time.Minute).Unix())
	forged := append([]byte(nil), valid...)
	forged[len(forged)-1] ^= 1
	otherIP := j.make(nil, cc, netip.MustParseAddr("192.0.2.2"), now.Unix())
	for _, tc := range []struct {
		name      string
		c         []byte
		malformed bool
		at        time.Time
		want      int
	}{
		{"none", nil, false, now, cookieNone},
		{"client only", cc, false, now, cookieClient},
		{"valid", valid, false, now, cookieValid},
		{"valid after 59 min", valid, false, now.Add(59 * time.Minute), cookieValid},
		{"stale", stale, false, now, cookieInvalid},
		{"from the future", future, false, now, cookieInvalid},
		{"forged", forged, false, now, cookieInvalid},
		{"other client address", otherIP, false, now, cookieInvalid},
		{"other server's format", append(append([]byte(nil), cc...), make([]byte, 20)...), false, now, cookieInvalid},
		{"malformed", []byte("short"), true, now, cookieMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := j.check(tc.c, tc.malformed, client, tc.at.Unix()); got != tc.want {
				t.Fatalf("check = %s, want %s", cookieStateNames[got], cookieStateNames[tc.want])
			}
		})
	}
	// Checked in order: the jar rotates its secret after an hour, and still
	// accepts the previous one's cookies, but not two rotations later.
	later := now.Add(cookieRotate + time.Minute)
	fresh := j.make(nil, cc, client, later.Unix())
	if got := j.check(fresh, false, client, later.Unix()); got != cookieValid {
		t.Fatalf("fresh cookie after rotation: %s", cookieStateNames[got])
	}
	muchLater := later.Add(2*cookieRotate + time.Minute)
	if got := j.check(fresh, false, client, muchLater.Unix()); got != cookieInvalid {
		t.Fatalf("cookie after two rotations: %s", cookieStateNames[got])
	}
}

func TestParseReqEDNS(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cookie    string // hex; "" = no option
		noEDNS    bool
		wantLen   int
		malformed bool
	}{
		{"no EDNS", "", true, 0, false},
		{"EDNS without cookie", "", false, 0, false},
		{"client cookie", "0102030405060708", false, 8, false},
		{"full cookie", "0102030405060708" + "01000000aabbccdd1122334455667788", false, 24, false},
		{"too short", "01020304", false, 4, true},
		{"between", "0102030405060708" + "0102", false, 10, true},
		{"too long", "0102030405060708" + hex.EncodeToString(make([]byte, 33)), false, 41, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("www.example.test.", dns.TypeA)
			if !tc.noEDNS {
				m.SetEdns0(1400, true)
				if tc.cookie != "" {
					m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: tc.cookie})
				}
			}
			req, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			e := parseReqEDNS(req)
			if e.present == tc.noEDNS || len(e.cookie) != tc.wantLen || e.malformed != tc.malformed {
				t.Fatalf("got present=%v cookie=%d malformed=%v", e.present, len(e.cookie), e.malformed)
			}
			if e.present && (e.size != 1400 || !e.do) {
				t.Fatalf("size %d do %v", e.size, e.do)
			}
		})
	}
}

// guardServer is a server with RRL and cookies on and a settable clock.
type guardServer struct {
	s   *Server
	now time.Time
}

func newGuardServer(t testing.TB, rrl RRLOptions, cookies bool) *guardServer {
	t.Helper()
	s, err := New(testConfig(t), Options{Listen: []string{"127.0.0.1:0"}, Summoner: newFakeSummoner(), RRL: rrl, Cookies: cookies})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	g := &guardServer{s: s, now: time.Unix(1_700_000_000, 0)}
	s.hard.now = func() time.Time { return g.now }
	return g
}

// ask answers req from src over UDP as the server would send it (nil: dropped).
func (g *guardServer) ask(t testing.TB, req []byte, src string) []byte {
	w := &worker{}
	resp, deferred := g.s.process(w, g.s.snap.Load(), req, false, true, make([]byte, 0, 512))
	if deferred {
		t.Fatal("deferred although it may block")
	}
	return g.s.guard(w, req, resp, &net.UDPAddr{IP: net.ParseIP(src), Port: 53}, false)
}

func cookieQuery(t testing.TB, name string, qtype uint16, cookie string) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	if cookie != "" {
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie})
	}
	req, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// tally counts the answers of a flood.
type tally struct {
	full, truncated, badCookie, dropped int
	bytesIn, bytesOut                   int
	lastCookie                          string
}

func (c *tally) add(t testing.TB, req, resp []byte) {
	t.Helper()
	c.bytesIn += len(req)
	if resp == nil {
		c.dropped++
		return
	}
	c.bytesOut += len(resp)
	var m dns.Msg
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if ck, ok := o.(*dns.EDNS0_COOKIE); ok {
				c.lastCookie = ck.Cookie
			}
		}
	}
	switch {
	case m.Rcode == dns.RcodeBadCookie:
		c.badCookie++
	case m.Truncated:
		if len(m.Answer)+len(m.Ns) != 0 {
			t.Fatalf("truncated answer with records: %v", m)
		}
		c.truncated++
	default:
		c.full++
	}
}

func (c *tally) amplification() float64 { return float64(c.bytesOut) / float64(c.bytesIn) }

// flood sends n copies of req from src, evenly over one second.
func (g *guardServer) flood(t testing.TB, n int, req []byte, src string) tally {
	var c tally
	start := g.now
	for i := range n {
		g.now = start.Add(time.Duration(i) * time.Second / time.Duration(n))
		c.add(t, req, g.ask(t, req, src))
	}
	g.now = start.Add(time.Second)
	return c
}

func TestRRLFlood(t *testing.T) {
	const rate, slip, n = 20, 2, 1000
	for _, tc := range []struct {
		name  string
		qname string
		qtype uint16
	}{
		{"TXT, 5 records", "medium.example.test.", dns.TypeTXT},
		{"A of a unikernel", "www.example.test.", dns.TypeA},
		{"NXDOMAIN, one name", "nothere.example.test.", dns.TypeA},
		{"REFUSED", "www.elsewhere.org.", dns.TypeA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGuardServer(t, RRLOptions{Rate: rate, Slip: slip, Window: time.Second}, true)
			req := cookieQuery(t, tc.qname, tc.qtype, "")
			c := g.flood(t, n, req, "192.0.2.1")
			t.Logf("%d queries in 1 s from one source: %d full, %d truncated, %d dropped; amplification %.2f (bytes out/in)",
				n, c.full, c.truncated, c.dropped, c.amplification())
			if c.full > rate {
				t.Errorf("%d full answers, more than the rate %d", c.full, rate)
			}
			if c.full == 0 {
				t.Errorf("no full answer at all")
			}
			if want := (n - c.full) / slip; c.truncated != want {
				t.Errorf("%d truncated answers, want %d (every %dth limited one)", c.truncated, want, slip)
			}
			// The same flood from another /24 is accounted apart.
			if c2 := g.flood(t, rate, req, "192.0.3.1"); c2.full != rate {
				t.Errorf("another prefix got %d full answers of %d", c2.full, rate)
			}
			// Next second: the rate again.
			if c3 := g.flood(t, n, req, "192.0.2.200"); c3.full != rate {
				t.Errorf("next second from the same /24: %d full answers, want %d", c3.full, rate)
			}
		})
	}
}

// TestRRLRandomNames: floods of random names (NXDOMAIN, or synthesized
// from a wildcard) are accounted per zone, not per name, so they cannot
// escape the limit; distinct existing names are accounted apart.
func TestRRLRandomNames(t *testing.T) {
	const rate, n = 20, 1000
	for _, tc := range []struct {
		name      string
		qname     string // %d: the query's number
		wantLimit bool
	}{
		{"random NXDOMAIN", "r%d.example.test.", true},
		{"random names under a wildcard", "r%d.wild.example.test.", true},
		{"random names under a wildcard, mixed case", "R%d.WiLd.example.test.", true},
		{"random names below a delegation", "r%d.sub.example.test.", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGuardServer(t, RRLOptions{Rate: rate, Slip: 2, Window: time.Second}, false)
			var c tally
			for i := range n {
				g.now = g.now.Add(time.Second / n)
				req := cookieQuery(t, fmt.Sprintf(tc.qname, i), dns.TypeA, "")
				c.add(t, req, g.ask(t, req, "192.0.2.1"))
			}
			t.Logf("%d random names in 1 s: %d full, %d truncated, %d dropped", n, c.full, c.truncated, c.dropped)
			if c.full > rate+1 { // the flood may straddle a second boundary
				t.Fatalf("%d full answers, rate %d", c.full, rate)
			}
		})
	}
	// Existing names each have their own account.
	g := newGuardServer(t, RRLOptions{Rate: rate, Slip: 2, Window: time.Second}, false)
	for _, name := range []string{"mail.example.test.", "host.wild.example.test.", "multi.example.test."} {
		if c := g.flood(t, rate, cookieQuery(t, name, dns.TypeA, ""), "192.0.2.1"); c.full != rate {
			t.Fatalf("%s: %d full answers of %d", name, c.full, rate)
		}
		g.now = g.now.Add(-time.Second) // the same second for each name
	}
}

// TestRRLSlipKeepsEDNS: a slipped answer keeps the query's EDNS (with
// cookies off too), so that the client's retry sees our payload size.
func TestRRLSlipKeepsEDNS(t *testing.T) {
	for _, cookies := range []bool{false, true} {
		g := newGuardServer(t, RRLOptions{Rate: 1, Slip: 1, Window: time.Second}, cookies)
		req := cookieQuery(t, "mail.example.test.", dns.TypeA, "")
		g.ask(t, req, "192.0.2.1")
		var m dns.Msg
		if err := m.Unpack(g.ask(t, req, "192.0.2.1")); err != nil {
			t.Fatal(err)
		}
		if !m.Truncated || m.IsEdns0() == nil || len(m.Question) != 1 {
			t.Fatalf("cookies %v: slipped answer %v", cookies, &m)
		}
	}
}

// TestRRLAmplification prints the amplification factor of a spoofed flood
// for a large answer with and without RRL.
func TestRRLAmplification(t *testing.T) {
	const n = 1000
	req := cookieQuery(t, "medium.example.test.", dns.TypeTXT, "")
	for _, tc := range []struct {
		name string
		rrl  RRLOptions
	}{
		{"off", RRLOptions{}},
		{"rate 20 slip 2", RRLOptions{Rate: 20, Slip: 2, Window: time.Second}},
		{"rate 20 slip 1", RRLOptions{Rate: 20, Slip: 1, Window: time.Second}},
		{"rate 20 slip 0", RRLOptions{Rate: 20, Slip: 0, Window: time.Second}},
	} {
		g := newGuardServer(t, tc.rrl, true)
		var c tally
		for range 10 { // ten seconds of flood
			f := g.flood(t, n, req, "198.51.100.7")
			c.full += f.full
			c.bytesIn += f.bytesIn
			c.bytesOut += f.bytesOut
		}
		t.Logf("RRL %-15s: %d q/s spoofed for 10 s, %4d full answers, amplification %.2f (bytes out/in, query %d bytes)",
			tc.name, n, c.full, c.amplification(), len(req))
		if tc.rrl.Rate > 0 && c.amplification() > 1.5 {
			t.Errorf("amplification %.2f under RRL", c.amplification())
		}
	}
}

func TestRRLWindow(t *testing.T) {
	// With a window of W seconds, a flood leaves the account in debt by
	// up to W-1 seconds' worth of rate.
	for _, tc := range []struct {
		window    time.Duration
		perSecond []int
		want      []int
	}{
		{time.Second, []int{1000, 10}, []int{10, 10}},
		{3 * time.Second, []int{1000, 0, 10}, []int{10, 0, 0}},
		{3 * time.Second, []int{1000, 0, 0, 10}, []int{10, 0, 0, 10}},
	} {
		t.Run(fmt.Sprint(tc.window, tc.perSecond), func(t *testing.T) {
			g := newGuardServer(t, RRLOptions{Rate: 10, Slip: 0, Window: tc.window}, false)
			req := cookieQuery(t, "mail.example.test.", dns.TypeA, "")
			var got []int
			for _, n := range tc.perSecond {
				got = append(got, g.flood(t, n, req, "192.0.2.9").full)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("full answers per second = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCookieExemptsFromRRL(t *testing.T) {
	const rate, n = 20, 1000
	g := newGuardServer(t, RRLOptions{Rate: rate, Slip: 2, Window: time.Second}, true)
	const cc = "0a0b0c0d0e0f1011"
	// First contact: the answer carries our server cookie.
	var first tally
	first.add(t, nil, g.ask(t, cookieQuery(t, "medium.example.test.", dns.TypeTXT, cc), "203.0.113.5"))
	if len(first.lastCookie) != 2*(clientCookie+serverCookie) || first.lastCookie[:16] != cc {
		t.Fatalf("first answer's cookie %q", first.lastCookie)
	}
	req := cookieQuery(t, "medium.example.test.", dns.TypeTXT, first.lastCookie)
	c := g.flood(t, n, req, "203.0.113.5")
	if c.full != n {
		t.Fatalf("client with a valid cookie: %d full answers of %d (%d truncated, %d dropped)", c.full, n, c.truncated, c.dropped)
	}
	// The same cookie from another address is not valid: limited.
	c = g.flood(t, n, req, "203.0.113.6")
	if c.full > rate {
		t.Fatalf("cookie replayed from another address: %d full answers", c.full)
	}
	// A client cookie alone: limited, and the slipped answers are BADCOOKIE
	// with a fresh server cookie.
	c = g.flood(t, n, cookieQuery(t, "medium.example.test.", dns.TypeTXT, cc), "203.0.114.5")
	if c.full > rate || c.badCookie == 0 || c.truncated != 0 {
		t.Fatalf("client cookie only: %d full, %d BADCOOKIE, %d truncated", c.full, c.badCookie, c.truncated)
	}
	if len(c.lastCookie) != 48 {
		t.Fatalf("BADCOOKIE without a server cookie: %q", c.lastCookie)
	}
	t.Logf("client cookie only, %d queries: %d full, %d BADCOOKIE, %d dropped", n, c.full, c.badCookie, c.dropped)
}

func TestMalformedCookieFormErr(t *testing.T) {
	g := newGuardServer(t, RRLOptions{}, true)
	resp := g.ask(t, cookieQuery(t, "www.example.test.", dns.TypeA, "0102030405"), "192.0.2.1")
	var m dns.Msg
	if err := m.Unpack(resp); err != nil {
		t.Fatal(err)
	}
	if m.Rcode != dns.RcodeFormatError || len(m.Answer) != 0 {
		t.Fatalf("malformed cookie: %v", &m)
	}
}

// TestCookieLargeAnswerTruncates: the cookie pushes an answer over the
// client's UDP size: it goes out truncated, cookie included.
func TestCookieLargeAnswerTruncates(t *testing.T) {
	g := newGuardServer(t, RRLOptions{}, true)
	m := new(dns.Msg)
	m.SetQuestion("big.example.test.", dns.TypeTXT)
	m.SetEdns0(4096, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	req, _ := m.Pack()
	resp := g.ask(t, req, "192.0.2.1")
	if len(resp) > maxUDPPayload {
		t.Fatalf("UDP answer of %d bytes", len(resp))
	}
	var c tally
	c.add(t, req, resp)
	if c.lastCookie == "" {
		t.Fatal("no cookie in the answer")
	}
}

// BenchmarkGuard is the cost of the response guard on one answer (the
// handler's own work excluded): off, RRL without a cookie, a client cookie
// only, and a valid server cookie (RRL exempt).
func BenchmarkGuard(b *testing.B) {
	for _, tc := range []struct {
		name    string
		rrl     RRLOptions
		cookies bool
		cookie  string // "learn": a valid one learned first
	}{
		{"off", RRLOptions{}, false, ""},
		{"rrl", RRLOptions{Rate: 1 << 30, Slip: 2, Window: time.Second}, true, ""},
		{"rrl+client-cookie", RRLOptions{Rate: 1 << 30, Slip: 2, Window: time.Second}, true, "0102030405060708"},
		{"rrl+valid-cookie", RRLOptions{Rate: 1 << 30, Slip: 2, Window: time.Second}, true, "learn"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			g := newGuardServer(b, tc.rrl, tc.cookies)
			cookie := tc.cookie
			if cookie == "learn" {
				var c tally
				c.add(b, nil, g.ask(b, cookieQuery(b, "mail.example.test.", dns.TypeA, "0102030405060708"), "192.0.2.1"))
				cookie = c.lastCookie
			}
			req := cookieQuery(b, "mail.example.test.", dns.TypeA, cookie)
			w := &worker{}
			resp, _ := g.s.process(w, g.s.snap.Load(), req, false, true, nil)
			src := &net.UDPAddr{IP: net.ParseIP("192.0.2.1"), Port: 53}
			buf := make([]byte, 0, 1500)
			for b.Loop() {
				out := g.s.guard(w, req, append(buf[:0], resp...), src, false)
				if out == nil {
					b.Fatal("dropped")
				}
			}
		})
	}
}

func TestFastOPTData(t *testing.T) {
	cookie := func(n int) []byte {
		b := []byte{0, byte(4 + n), 0, 10, 0, byte(n)}
		return append(b, make([]byte, n)...)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"no option", []byte{0, 0}, true},
		{"client cookie", cookie(8), true},
		{"full cookie", cookie(24), true},
		{"longest cookie", cookie(40), true},
		{"malformed cookie", cookie(5), false},
		{"cookie too long", cookie(41), false},
		{"other option", []byte{0, 4, 0, 8, 0, 0}, false},
		{"trailing bytes", append(cookie(8), 0), false},
		{"cut short", cookie(24)[:20], false},
		{"rdlen past the end", []byte{0, 9, 0, 10}, false},
		{"empty", nil, false},
	} {
		if got := fastOPTData(tc.b); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestCookieQueriesTakeTheFastPath: a query with a COOKIE option is
// answered from the cache, with the same answer as without, plus the
// cookie.
func TestCookieQueriesTakeTheFastPath(t *testing.T) {
	g := newGuardServer(t, RRLOptions{}, true)
	req := cookieQuery(t, "mail.example.test.", dns.TypeA, "0102030405060708")
	if _, ok := parseFast(req, &worker{}); !ok {
		t.Fatal("a query with a client cookie takes the slow path")
	}
	with, without := g.ask(t, req, "192.0.2.1"), g.ask(t, cookieQuery(t, "mail.example.test.", dns.TypeA, ""), "192.0.2.1")
	var a, b dns.Msg
	if err := a.Unpack(with); err != nil {
		t.Fatal(err)
	}
	if err := b.Unpack(without); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rrStrings(a.Answer, true)) != fmt.Sprint(rrStrings(b.Answer, true)) || len(a.IsEdns0().Option) != 1 {
		t.Fatalf("with a cookie:\n%v\nwithout:\n%v", &a, &b)
	}
}
