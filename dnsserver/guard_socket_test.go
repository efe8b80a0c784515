package dnsserver

import (
	"math"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startGuardSocketServer serves the test zone with RRL and cookies on.
func startGuardSocketServer(t *testing.T, rrl RRLOptions) (*Server, string) {
	t.Helper()
	return startServer(t, testConfig(t), Options{Summoner: newFakeSummoner(), RRL: rrl, Cookies: true})
}

// exchangeUDP sends req on c and returns the answer, nil if none came
// within wait.
func exchangeUDP(t *testing.T, c net.Conn, req []byte, wait time.Duration) *dns.Msg {
	t.Helper()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	return m
}

// TestRRLOverUDP runs the flood through the real sockets: the guard is on
// the UDP path (full answers bounded by the rate, the rest slipped or
// dropped), and a client with a valid cookie is not limited.
func TestRRLOverUDP(t *testing.T) {
	const rate, n = 20, 300
	s, addr := startGuardSocketServer(t, RRLOptions{Rate: rate, Slip: 2, Window: time.Second})
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := cookieQuery(t, "medium.example.test.", dns.TypeTXT, "")
	full, truncated, none := 0, 0, 0
	start := time.Now()
	for range n {
		switch m := exchangeUDP(t, c, req, 20*time.Millisecond); {
		case m == nil:
			none++
		case m.Truncated:
			truncated++
		default:
			full++
		}
	}
	secs := time.Since(start).Seconds()
	t.Logf("%d queries in %.2f s over UDP: %d full, %d truncated, %d unanswered; counters: slipped %v, dropped %v",
		n, secs, full, truncated, none, counterValue(t, s.hard.met.slipped), counterValue(t, s.hard.met.dropped))
	if limit := rate * (int(math.Ceil(secs)) + 1); full > limit {
		t.Fatalf("%d full answers in %.2f s, rate %d/s", full, secs, rate)
	}
	if truncated == 0 || counterValue(t, s.hard.met.dropped) == 0 {
		t.Fatalf("nothing slipped (%d) or dropped", truncated)
	}

	// Learn a cookie (the source is still over the rate: the answers that
	// are not dropped are BADCOOKIE, with the cookie), then the same flood
	// goes through in full.
	var cookie string
	for try := 0; try < 10 && cookie == ""; try++ {
		m := exchangeUDP(t, c, cookieQuery(t, "medium.example.test.", dns.TypeTXT, "0102030405060708"), 100*time.Millisecond)
		if m == nil || m.IsEdns0() == nil {
			continue
		}
		for _, o := range m.IsEdns0().Option {
			if ck, ok := o.(*dns.EDNS0_COOKIE); ok {
				cookie = ck.Cookie
			}
		}
	}
	if len(cookie) != 48 {
		t.Fatalf("no server cookie learned: %q", cookie)
	}
	req = cookieQuery(t, "medium.example.test.", dns.TypeTXT, cookie)
	for i := range n {
		m := exchangeUDP(t, c, req, time.Second)
		if m == nil || m.Truncated || len(m.Answer) == 0 {
			t.Fatalf("query %d with a valid cookie: %v", i, m)
		}
	}
}

// TestCookieOverTCP: TCP answers carry our server cookie too.
func TestCookieOverTCP(t *testing.T) {
	_, addr := startGuardSocketServer(t, RRLOptions{Rate: 1, Slip: 1, Window: time.Second})
	m := new(dns.Msg)
	m.SetQuestion("mail.example.test.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	for i := range 5 { // over the rate: TCP is never limited
		r, _, err := c.Exchange(m, addr)
		if err != nil || len(r.Answer) != 1 || r.Truncated {
			t.Fatalf("TCP query %d: %v %v", i, r, err)
		}
		var got string
		for _, o := range r.IsEdns0().Option {
			if ck, ok := o.(*dns.EDNS0_COOKIE); ok {
				got = ck.Cookie
			}
		}
		if len(got) != 48 || got[:16] != "0102030405060708" {
			t.Fatalf("TCP answer's cookie %q", got)
		}
	}
}
