package dnsserver

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/internal/knotconf"
)

// The knotd tests use loopback addresses only: jitsu listens on 127.0.0.1,
// the knotd secondaries on 127.0.0.2 and 127.0.0.4 (and transfer from
// there), strangers ask from 127.0.0.3.

// TestTransferLikeKnot compares jitsu with a knotd primary that has the
// same zone and the same transfer ACL: transfers from the secondary and
// from a stranger, AXFR and IXFR, over UDP and TCP, with and without the
// key.
func TestTransferLikeKnot(t *testing.T) {
	for _, tsig := range []bool{false, true} {
		t.Run(fmt.Sprintf("tsig=%v", tsig), func(t *testing.T) {
			cfg := xfrConfig(t, tsig, "127.0.0.2:9")
			knot := startKnot(t, cfg, testAddrs)
			_, ours := startXFRServer(t, cfg)
			type req struct {
				src, netw string
				qtype     uint16
				serial    uint32
				key       string
			}
			var reqs []req
			for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
				for _, netw := range []string{"udp", "tcp"} {
					for _, key := range []string{"", "xfr.example.test.", "other.example.test."} {
						reqs = append(reqs, req{src, netw, dns.TypeAXFR, 0, key},
							req{src, netw, dns.TypeIXFR, 0, key}, req{src, netw, dns.TypeIXFR, 1, key})
					}
				}
			}
			for _, r := range reqs {
				name := fmt.Sprintf("%s/%s/%s/%d/key=%q", r.src, r.netw, dns.TypeToString[r.qtype], r.serial, r.key)
				t.Run(name, func(t *testing.T) {
					got, gotErr := firstXFRAnswer(t, ours, r.src, r.netw, r.qtype, r.serial, r.key)
					want, wantErr := firstXFRAnswer(t, knot, r.src, r.netw, r.qtype, r.serial, r.key)
					if gotErr != nil || wantErr != nil {
						t.Fatalf("jitsu: %v, knotd: %v", gotErr, wantErr)
					}
					if got.Rcode != want.Rcode {
						t.Errorf("rcode %s, knotd %s", dns.RcodeToString[got.Rcode], dns.RcodeToString[want.Rcode])
					}
					tsigErr := func(m *dns.Msg) int {
						if ts := m.IsTsig(); ts != nil {
							return int(ts.Error)
						}
						return -1
					}
					if tsigErr(got) != tsigErr(want) {
						t.Errorf("TSIG error %d, knotd %d (-1: none)", tsigErr(got), tsigErr(want))
					}
					if g, w := rrStrings(got.Answer, true), rrStrings(want.Answer, true); want.Rcode == dns.RcodeSuccess && len(w) <= 1 && !slices.Equal(g, w) {
						t.Errorf("answer:%s\nknotd:%s", fmtRRs(g), fmtRRs(w))
					}
				})
			}
			// The whole transfer, from the secondary.
			key, secret := "", ""
			if tsig {
				key, secret = "xfr.example.test.", testSecret
			}
			got, err := transfer(t, ours, "127.0.0.2", false, 0, key, secret)
			if err != nil {
				t.Fatal(err)
			}
			want, err := transfer(t, knot, "127.0.0.2", false, 0, key, secret)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := rrStrings(got, true), rrStrings(want, true); !slices.Equal(g, w) {
				t.Errorf("AXFR:%s\nknotd:%s", fmtRRs(g), fmtRRs(w))
			}
		})
	}
}

// firstXFRAnswer sends one transfer request and returns the first
// message of the answer (its TSIG not checked).
func firstXFRAnswer(t *testing.T, server, src, netw string, qtype uint16, serial uint32, key string) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	if qtype == dns.TypeIXFR {
		m.SetIxfr("example.test.", serial, "ns1.example.test.", "hostmaster.example.test.")
	} else {
		m.SetAxfr("example.test.")
	}
	var wire []byte
	var err error
	if key != "" {
		m.SetTsig(key, dns.HmacSHA256, 300, time.Now().Unix())
		wire, _, err = dns.TsigGenerate(m, testSecret, "", false)
	} else {
		wire, err = m.Pack()
	}
	if err != nil {
		return nil, err
	}
	var local net.Addr = &net.TCPAddr{IP: net.ParseIP(src)}
	if netw == "udp" {
		local = &net.UDPAddr{IP: net.ParseIP(src)}
	}
	d := net.Dialer{LocalAddr: local, Timeout: 2 * time.Second}
	c, err := d.Dial(netw, server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	var conn net.Conn = c
	if netw == "tcp" {
		conn = &dns.Conn{Conn: c}
	}
	if _, err := conn.Write(wire); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	n, err := conn.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	var r dns.Msg
	if err := r.Unpack(buf[:n]); err != nil {
		return nil, err
	}
	return &r, nil
}

// knotSecondary starts knotd on ip@port as a secondary of jitsu (at
// primary) for example.test., transferring with the key secret, and
// returns its address and process.
func knotSecondary(t *testing.T, ip string, port int, primary, secret string) (string, *knotProc) {
	t.Helper()
	dir := t.TempDir()
	conf, err := knotconf.Secondary{Dir: dir, IP: ip, Port: port, Zone: "example.test.", Primary: primary,
		Via: ip, Key: "xfr.example.test.", Secret: secret}.Conf()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(ip, fmt.Sprint(port)), runKnot(t, dir, conf)
}

// TestKnotSecondary runs knotd as a secondary of jitsu: it transfers the
// zone (AXFR, TSIG-signed), then answers like jitsu for every static and
// unikernel name; a reload reaches it through NOTIFY and IXFR; a knotd
// with the wrong key gets no zone.
func TestKnotSecondary(t *testing.T) {
	requireKnot(t)
	port2, port4 := freePortOn(t, "127.0.0.2"), freePortOn(t, "127.0.0.4")
	cfg := xfrConfig(t, true, fmt.Sprintf("127.0.0.2:%d", port2), fmt.Sprintf("127.0.0.4:%d", port4))
	// As jitsu serve runs it: cookies on, RRL on (the battery's queries
	// come from 127.0.0.1, the transfers from the secondaries).
	s, err := New(cfg, Options{Listen: []string{"127.0.0.1:0"}, Summoner: newFakeSummoner(),
		Cookies: true, RRL: RRLOptions{Rate: 100000, Slip: 2, Window: 15 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	s.xfr.notify.firstWait = 200 * time.Millisecond
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ours := s.Addrs()[0].String()

	knot, kp := knotSecondary(t, "127.0.0.2", port2, ours, testSecret)
	serial := uint32(1)
	kp.waitSOA(t, knot, "example.test.", &serial)
	n := compareBattery(t, ours, knot, append(secondaryBattery(), everyName(s)...))
	t.Logf("after AXFR: %d queries compared", n)
	if !strings.Contains(kp.log(), "AXFR, incoming") {
		t.Errorf("knotd did not log an incoming AXFR")
	}

	// A reload that changes the zone: serial 2, NOTIFY, IXFR.
	cfg2 := withRecord(t, cfg, `reload.example.test. 60 IN TXT "after the reload"`)
	if err := s.Update(cfg2); err != nil {
		t.Fatal(err)
	}
	serial = 2
	kp.waitSOA(t, knot, "example.test.", &serial)
	log := kp.log()
	for _, want := range []string{"notify, incoming, remote 127.0.0.1", "serial 2", "IXFR, incoming", "serial 1 -> 2"} {
		if !strings.Contains(log, want) {
			t.Errorf("knotd did not follow the reload by NOTIFY and IXFR: no %q in its log", want)
		}
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "example.test.") {
			t.Logf("knotd: %s", l)
		}
	}
	b := append(append(secondaryBattery(), everyName(s)...), battery{name: "reload/TXT", qname: "reload.example.test.", qtype: dns.TypeTXT})
	n = compareBattery(t, ours, knot, b)
	t.Logf("after IXFR: %d queries compared", n)

	// A secondary with the wrong key gets nothing: jitsu answers its SOA
	// queries and transfer requests NOTAUTH (BADSIG), knotd has no zone.
	wrong := base64.StdEncoding.EncodeToString([]byte("wrong-secret-wrong-secret-wrong!"))
	bad, bp := knotSecondary(t, "127.0.0.4", port4, ours, wrong)
	for start := time.Now(); !strings.Contains(bp.log(), "BADSIG") && !strings.Contains(bp.log(), "failed"); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 15*time.Second {
			t.Fatalf("the knotd with the wrong key logged no failure")
		}
	}
	for _, l := range strings.Split(bp.log(), "\n") {
		if strings.Contains(l, "example.test.") {
			t.Logf("knotd with the wrong key: %s", l)
		}
	}
	r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(new(dns.Msg).SetQuestion("example.test.", dns.TypeSOA), bad)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
		t.Errorf("the knotd with the wrong key answers %s with %d records, want SERVFAIL (no zone)", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
}

// secondaryBattery is the knotd battery without the queries whose answer
// depends on knotd's role rather than the zone: none at present, but
// NOTIFY to a secondary is its business.
func secondaryBattery() []battery {
	return slices.DeleteFunc(knotBattery(), func(b battery) bool {
		return strings.HasPrefix(b.name, "opcode NOTIFY")
	})
}

// everyName queries A, AAAA, TXT and MX at every name of the zone (static
// and unikernel names, empty non-terminals, the wildcards themselves).
func everyName(s *Server) []battery {
	var b []battery
	for name, n := range s.snap.Load().zones["example.test."].nodes {
		if n.unikernel == "broken" {
			continue // no address: SERVFAIL from jitsu, not in the transferred zone
		}
		for _, t := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeMX} {
			b = append(b, battery{name: "every/" + name + "/" + dns.TypeToString[t], qname: name, qtype: t})
		}
	}
	slices.SortFunc(b, func(x, y battery) int { return strings.Compare(x.name, y.name) })
	return b
}
