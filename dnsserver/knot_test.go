package dnsserver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const knotdPath = "/usr/sbin/knotd"

// startKnot serves cfg with knotd on a free loopback port (the unikernel
// names get A/AAAA records with the fake summoner's addresses) and returns
// its address.
//
// The zones' secondaries (and TSIG keys) become knotd transfer ACLs, so
// that transfers can be compared too.
func startKnot(t *testing.T, cfg Config, addrs map[string][]netip.Addr) string {
	t.Helper()
	requireKnot(t)
	dir := t.TempDir()
	var conf strings.Builder
	port := freePort(t)
	fmt.Fprintf(&conf, "server:\n    rundir: %q\n    listen: 127.0.0.1@%d\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n", dir, port)
	fmt.Fprintf(&conf, "database:\n    storage: %q\nlog:\n  - target: stderr\n    any: warning\n", dir)
	var zones strings.Builder
	keys, acls := "", ""
	for i, z := range cfg.Zones {
		file := filepath.Join(dir, fmt.Sprintf("zone%d", i))
		text := ZoneFile(z, cfg.SummonTTL, addrs)
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&zones, "  - domain: %q\n    file: %q\n", z.Origin, file)
		if len(z.Secondaries) == 0 {
			continue
		}
		var addrs []string
		for _, s := range z.Secondaries {
			addrs = append(addrs, s.Addr().String())
		}
		acls += fmt.Sprintf("  - id: xfr%d\n    address: [%s]\n    action: transfer\n", i, strings.Join(addrs, ", "))
		if k := z.TSIG; k != nil {
			keys += fmt.Sprintf("  - id: %s\n    algorithm: %s\n    secret: %s\n", k.Name, strings.TrimSuffix(k.Algorithm, "."), k.Secret)
			acls += fmt.Sprintf("    key: %s\n", k.Name)
		}
		fmt.Fprintf(&zones, "    acl: xfr%d\n", i)
	}
	if keys != "" {
		conf.WriteString("key:\n" + keys)
	}
	if acls != "" {
		conf.WriteString("acl:\n" + acls)
	}
	conf.WriteString("zone:\n" + zones.String())
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	k := runKnot(t, dir, conf.String())
	k.waitSOA(t, addr, cfg.Zones[0].Origin, nil)
	return addr
}

// requireKnot skips the test when knotd is not installed, or fails it in
// CI (CI=true).
func requireKnot(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(knotdPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("knotd is required in CI (apt-get install knot): %v", err)
		}
		t.Skipf("knotd not installed (%v): install the Debian package knot to compare with it", err)
	}
}

// knotProc is a running knotd: its log (stderr) and its end.
type knotProc struct {
	mu     sync.Mutex
	stderr strings.Builder
	done   chan struct{}
}

func (k *knotProc) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.stderr.Write(p)
}

// log returns what knotd has logged so far.
func (k *knotProc) log() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.stderr.String()
}

// runKnot starts knotd with the configuration text conf (written in dir)
// and kills it (and waits for it) when the test ends.
func runKnot(t *testing.T, dir, conf string) *knotProc {
	t.Helper()
	confFile := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(knotdPath, "-c", confFile)
	k := &knotProc{done: make(chan struct{})}
	cmd.Stderr = k
	if err := cmd.Start(); err != nil {
		t.Fatalf("start knotd: %v", err)
	}
	go func() { _ = cmd.Wait(); close(k.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-k.done
		if t.Failed() {
			t.Logf("knotd (%s) log:\n%s", confFile, k.log())
		}
	})
	return k
}

// waitSOA waits until knotd at addr answers the SOA of origin (with the
// serial *serial if not nil), for up to 15 s.
func (k *knotProc) waitSOA(t *testing.T, addr, origin string, serial *uint32) {
	t.Helper()
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	q := new(dns.Msg).SetQuestion(origin, dns.TypeSOA)
	for start := time.Now(); ; {
		r, _, err := c.Exchange(q, addr)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
			if serial == nil || r.Answer[0].(*dns.SOA).Serial == *serial {
				return
			}
		}
		select {
		case <-k.done:
			t.Fatalf("knotd exited: %s", k.log())
		default:
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("knotd on %s: no SOA of %s (serial %v) after 15 s: %v %v", addr, origin, serial, r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a port free for both UDP and TCP on 127.0.0.1.
func freePort(t *testing.T) int { t.Helper(); return freePortOn(t, "127.0.0.1") }

// freePortOn returns a port free for both UDP and TCP on ip.
func freePortOn(t *testing.T, ip string) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
		_ = pc.Close()
		if err == nil {
			_ = ln.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// startServer starts a server with cfg and o, listening on o.Listen or
// else on a loopback port, until the test ends; it returns the server and
// its first address.
func startServer(t *testing.T, cfg Config, o Options) (*Server, string) {
	t.Helper()
	if len(o.Listen) == 0 {
		o.Listen = []string{"127.0.0.1:0"}
	}
	s, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, s.Addrs()[0].String()
}

// startTestServer starts our server on a loopback port with the test zone.
func startTestServer(t *testing.T, fs *fakeSummoner) (*Server, string) {
	t.Helper()
	return startServer(t, testConfig(t), Options{Summoner: fs})
}

// battery is one query of the comparison.
type battery struct {
	name   string
	qname  string
	qtype  uint16
	mutate func(m *dns.Msg) // changes the query (opcode, class, sections...)
	// knotDrops: knotd sends no answer (UDP) or closes the connection
	// (TCP); we answer wantRcode instead (a deliberate difference).
	knotDrops bool
	wantRcode int
}

func knotBattery() []battery {
	var b []battery
	add := func(qname string, types ...uint16) {
		for _, t := range types {
			b = append(b, battery{name: qname + "/" + dns.TypeToString[t], qname: qname, qtype: t})
		}
	}
	add("example.test.", dns.TypeSOA, dns.TypeNS, dns.TypeMX, dns.TypeTXT, dns.TypeA, dns.TypeAAAA, dns.TypeCAA)
	add("www.example.test.", dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT)
	add("WwW.ExAmPlE.TeSt.", dns.TypeA, dns.TypeTXT)
	add("v6.example.test.", dns.TypeA, dns.TypeAAAA)
	add("mixed.example.test.", dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeMX)
	add("MIXED.example.TEST.", dns.TypeMX)
	add("ns1.example.test.", dns.TypeA, dns.TypeAAAA)
	add("mail.example.test.", dns.TypeA, dns.TypeANY, dns.TypeTXT)
	add("www6.example.test.", dns.TypeAAAA, dns.TypeA)
	add("multi.example.test.", dns.TypeANY, dns.TypeMX, dns.TypeA)
	add("nothere.example.test.", dns.TypeA, dns.TypeANY)
	add("deep.nothere.example.test.", dns.TypeA)
	add("c.example.test.", dns.TypeA)
	add("b.c.example.test.", dns.TypeTXT)
	add("a.b.c.example.test.", dns.TypeA)
	add("alias.example.test.", dns.TypeA, dns.TypeCNAME, dns.TypeAAAA, dns.TypeANY)
	add("alias2.example.test.", dns.TypeMX)
	add("touk.example.test.", dns.TypeA)
	add("dangling.example.test.", dns.TypeA)
	add("out.example.test.", dns.TypeA)
	add("loop1.example.test.", dns.TypeA)
	add("sub.example.test.", dns.TypeNS, dns.TypeA, dns.TypeDS)
	add("www.sub.example.test.", dns.TypeA, dns.TypeMX)
	add("ns.sub.example.test.", dns.TypeA)
	add("_http._tcp.example.test.", dns.TypeSRV)
	add("medium.example.test.", dns.TypeTXT)
	add("big.example.test.", dns.TypeTXT)
	add("mail.example.test.", 65000, dns.TypeAXFR, dns.TypeIXFR)
	// Wildcards: direct, deeper, the wildcard itself, blocked by an
	// existing name and by an empty non-terminal, CNAME, NODATA type, a
	// unikernel's name below a wildcard.
	add("x.wild.example.test.", dns.TypeA, dns.TypeTXT, dns.TypeMX, dns.TypeAAAA, dns.TypeANY, dns.TypeCNAME)
	add("X.Wild.Example.Test.", dns.TypeA)
	add("deep.er.wild.example.test.", dns.TypeA, dns.TypeNS)
	add("*.wild.example.test.", dns.TypeA, dns.TypeAAAA)
	add("host.wild.example.test.", dns.TypeA, dns.TypeTXT)
	add("b.wild.example.test.", dns.TypeA, dns.TypeTXT)
	add("c.b.wild.example.test.", dns.TypeA)
	add("a.b.wild.example.test.", dns.TypeA, dns.TypeTXT)
	add("wild.example.test.", dns.TypeA)
	add("uk.wild.example.test.", dns.TypeTXT, dns.TypeMX, dns.TypeAAAA)
	add("foo.cn.example.test.", dns.TypeA, dns.TypeCNAME, dns.TypeTXT)
	add("foo.cnw.example.test.", dns.TypeA, dns.TypeMX)
	add("www.other.org.", dns.TypeA)
	add("test.", dns.TypeSOA)
	add(".", dns.TypeNS)
	b = append(b,
		battery{name: "class CH", qname: "example.test.", qtype: dns.TypeTXT, mutate: func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }},
		battery{name: "class ANY", qname: "example.test.", qtype: dns.TypeSOA, mutate: func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassANY }},
		battery{name: "RD and CD", qname: "www.example.test.", qtype: dns.TypeA, mutate: func(m *dns.Msg) { m.RecursionDesired = true; m.CheckingDisabled = true }},
		battery{name: "opcode STATUS", qname: "example.test.", qtype: dns.TypeSOA, mutate: func(m *dns.Msg) { m.Opcode = dns.OpcodeStatus }},
		battery{name: "opcode IQUERY", qname: "example.test.", qtype: dns.TypeSOA, mutate: func(m *dns.Msg) { m.Opcode = dns.OpcodeIQuery }},
		battery{name: "opcode NOTIFY", qname: "example.test.", qtype: dns.TypeSOA, mutate: func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }},
		battery{name: "opcode NOTIFY outside zones", qname: "other.org.", qtype: dns.TypeSOA, mutate: func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }},
		battery{name: "opcode UPDATE", qname: "example.test.", qtype: dns.TypeSOA, mutate: func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate }},
		battery{name: "opcode UPDATE with a record", qname: "example.test.", qtype: dns.TypeSOA, mutate: func(m *dns.Msg) {
			m.Opcode = dns.OpcodeUpdate
			m.Ns = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "new.example.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: []byte{192, 0, 2, 9}}}
		}},
		battery{name: "IXFR from a stranger", qname: "example.test.", qtype: dns.TypeIXFR, mutate: func(m *dns.Msg) {
			m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET}, Ns: "a.", Mbox: "b.", Serial: 0}}
		}},
		battery{name: "no question", qname: "example.test.", qtype: dns.TypeSOA, mutate: func(m *dns.Msg) { m.Question = nil }},
		battery{name: "two questions", qname: "example.test.", qtype: dns.TypeSOA, mutate: func(m *dns.Msg) {
			m.Question = append(m.Question, dns.Question{Name: "www.example.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
		}, knotDrops: true, wantRcode: dns.RcodeFormatError},
		battery{name: "EDNS version 1", qname: "www.example.test.", qtype: dns.TypeA, mutate: func(m *dns.Msg) {
			if o := m.IsEdns0(); o != nil {
				o.SetVersion(1)
			} else {
				m.SetEdns0(1232, false)
				m.IsEdns0().SetVersion(1)
			}
		}},
		battery{name: "EDNS buffer 512", qname: "medium.example.test.", qtype: dns.TypeTXT, mutate: func(m *dns.Msg) {
			m.Extra = nil
			m.SetEdns0(512, false)
		}},
		battery{name: "EDNS buffer 4096", qname: "medium.example.test.", qtype: dns.TypeTXT, mutate: func(m *dns.Msg) {
			m.Extra = nil
			m.SetEdns0(4096, true)
		}},
	)
	return b
}

// TestCompareWithKnot sends one battery of queries to knotd and to our
// server with the same zone and compares the answers.
func TestCompareWithKnot(t *testing.T) {
	cfg := testConfig(t)
	knot := startKnot(t, cfg, testAddrs)
	_, ours := startTestServer(t, newFakeSummoner())
	t.Logf("%d queries compared", compareBattery(t, ours, knot, knotBattery()))
}

// compareBattery sends every query of the battery to our server and to
// knotd, over UDP and TCP, without EDNS, with and with DO, compares the
// answers in subtests and returns how many were compared.
func compareBattery(t *testing.T, ours, knot string, queries []battery) int {
	type ednsMode struct {
		name string
		set  func(m *dns.Msg)
	}
	modes := []ednsMode{
		{"noEDNS", func(*dns.Msg) {}},
		{"EDNS", func(m *dns.Msg) { m.SetEdns0(1232, false) }},
		{"EDNS+DO", func(m *dns.Msg) { m.SetEdns0(1400, true) }},
	}
	compared := 0
	for _, netw := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: netw, Timeout: 2 * time.Second, UDPSize: 65535}
		for _, mode := range modes {
			for _, q := range queries {
				name := fmt.Sprintf("%s/%s/%s", netw, mode.name, q.name)
				t.Run(name, func(t *testing.T) {
					m := new(dns.Msg)
					m.Id = dns.Id()
					m.Question = []dns.Question{{Name: q.qname, Qtype: q.qtype, Qclass: dns.ClassINET}}
					mode.set(m)
					if q.mutate != nil {
						q.mutate(m)
					}
					got, _, err := c.Exchange(m.Copy(), ours)
					if err != nil {
						t.Fatalf("jitsu: %v", err)
					}
					if q.knotDrops {
						if got.Rcode != q.wantRcode || got.Authoritative || got.RecursionAvailable || len(got.Question) != 0 {
							t.Errorf("got %s (AA %v, RA %v, %d questions), want %s, no AA, RA, question",
								dns.RcodeToString[got.Rcode], got.Authoritative, got.RecursionAvailable, len(got.Question),
								dns.RcodeToString[q.wantRcode])
						}
						dc := &dns.Client{Net: c.Net, Timeout: 300 * time.Millisecond}
						if _, _, err := dc.Exchange(m.Copy(), knot); err == nil {
							t.Errorf("knotd answered; the comparison expects it to drop this query")
						}
						return
					}
					want, _, err := c.Exchange(m.Copy(), knot)
					if err != nil {
						t.Fatalf("knotd: %v", err)
					}
					compareAnswers(t, m, got, want)
					compared++
				})
			}
		}
	}
	return compared
}

// compareAnswers compares header, question, OPT and the three sections
// (order- and TTL-independent).
func compareAnswers(t *testing.T, q, got, want *dns.Msg) {
	t.Helper()
	if got.RecursionAvailable {
		t.Errorf("RA set")
	}
	type hdr struct {
		Rcode, Opcode                    int
		QR, AA, TC, RD, RA, AD, CD, Zero bool
	}
	h := func(m *dns.Msg) hdr {
		return hdr{m.Rcode, m.Opcode, m.Response, m.Authoritative, m.Truncated, m.RecursionDesired,
			m.RecursionAvailable, m.AuthenticatedData, m.CheckingDisabled, m.Zero}
	}
	if q.CheckingDisabled {
		// Deliberate difference: we copy CD into the answer (RFC 4035
		// section 3.1.6), knotd does not.
		if !got.CheckingDisabled {
			t.Errorf("CD not copied")
		}
		got = got.Copy()
		got.CheckingDisabled = want.CheckingDisabled
	}
	if h(got) != h(want) {
		t.Errorf("header: got %+v, knotd %+v", h(got), h(want))
	}
	if got.Id != q.Id {
		t.Errorf("ID %d, want %d", got.Id, q.Id)
	}
	if !slices.Equal(got.Question, want.Question) {
		t.Errorf("question: got %v, knotd %v", got.Question, want.Question)
	}
	type opt struct {
		Present bool
		UDPSize uint16
		Do      bool
		Version uint8
		XRcode  int
		Options string
	}
	o := func(m *dns.Msg) opt {
		e := m.IsEdns0()
		if e == nil {
			return opt{}
		}
		return opt{true, e.UDPSize(), e.Do(), e.Version(), e.ExtendedRcode(), fmt.Sprint(e.Option)}
	}
	if o(got) != o(want) {
		t.Errorf("OPT: got %+v, knotd %+v", o(got), o(want))
	}
	for _, sec := range []struct {
		name      string
		got, want []dns.RR
	}{{"answer", got.Answer, want.Answer}, {"authority", got.Ns, want.Ns}, {"additional", got.Extra, want.Extra}} {
		g, w := rrStrings(sec.got, false), rrStrings(sec.want, false)
		if !slices.Equal(g, w) {
			t.Errorf("%s section:\ngot:%s\nknotd:%s", sec.name, fmtRRs(g), fmtRRs(w))
		}
	}
}
