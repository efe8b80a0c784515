package dnsserver

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metricValue returns the value of a counter or gauge.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if c := d.GetCounter(); c != nil {
		return c.GetValue()
	}
	return d.GetGauge().GetValue()
}

// testSecret is a TSIG secret for the tests (base64 of 32 bytes).
var testSecret = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// xfrConfig is the test zone with secondaries and, if tsig, a key. The
// tests name secondaries that do not run at port 9 (discard): NOTIFY and
// the start-up serial probe then get no answer from anyone.
func xfrConfig(t testing.TB, tsig bool, secondaries ...string) Config {
	cfg := testConfig(t)
	for _, s := range secondaries {
		cfg.Zones[0].Secondaries = append(cfg.Zones[0].Secondaries, netip.MustParseAddrPort(s))
	}
	if tsig {
		cfg.Zones[0].TSIG = &TSIGKey{Name: "xfr.example.test.", Algorithm: dns.HmacSHA256, Secret: testSecret}
	}
	cfg.Addrs = testAddrs
	return cfg
}

// withRecord returns cfg with one more static record in its first zone.
func withRecord(t testing.TB, cfg Config, line string) Config {
	z := cfg.Zones[0]
	z.Records = append(slices.Clone(z.Records), mustRRs(t, line)...)
	cfg.Zones = []Zone{z}
	return cfg
}

// withSerial returns cfg with the configured SOA serial of its first zone
// set to serial.
func withSerial(cfg Config, serial uint32) Config {
	z := cfg.Zones[0]
	z.Records = slices.Clone(z.Records)
	for i, rr := range z.Records {
		if soa, ok := rr.(*dns.SOA); ok {
			c := *soa
			c.Serial = serial
			z.Records[i] = &c
		}
	}
	cfg.Zones = []Zone{z}
	return cfg
}

func servedSerial(t *testing.T, s *Server) uint32 {
	t.Helper()
	r := exchange(t, s, new(dns.Msg).SetQuestion("example.test.", dns.TypeSOA), false)
	if r == nil || len(r.Answer) != 1 {
		t.Fatalf("no SOA answer: %v", r)
	}
	serial := r.Answer[0].(*dns.SOA).Serial
	nx := exchange(t, s, new(dns.Msg).SetQuestion("nothere.example.test.", dns.TypeA), false)
	if len(nx.Ns) != 1 || nx.Ns[0].(*dns.SOA).Serial != serial {
		t.Errorf("negative answer's SOA %v, want serial %d", nx.Ns, serial)
	}
	return serial
}

// TestSerialScheme checks the serial numbering over a series of reloads:
// the configured serial when it is newer than the one served, else the
// previous one plus one when the content changed.
func TestSerialScheme(t *testing.T) {
	base := xfrConfig(t, false)
	s, err := New(base, Options{Listen: []string{"127.0.0.1:0"}, Summoner: newFakeSummoner()})
	if err != nil {
		t.Fatal(err)
	}
	changed := withRecord(t, base, "new.example.test. 60 IN A 192.0.2.100")
	moved := xfrConfig(t, false)
	moved.Addrs = map[string][]netip.Addr{"www": {netip.MustParseAddr("10.213.0.99")}}
	steps := []struct {
		name string
		cfg  Config
		want uint32
	}{
		{"same content keeps the serial", base, 1},
		{"new record bumps", changed, 2},
		{"record removed bumps", base, 3},
		{"unikernel address changed bumps", moved, 4},
		{"summon TTL changed bumps", func() Config { c := moved; c.SummonTTL = time.Minute; return c }(), 5},
		{"unchanged again", func() Config { c := moved; c.SummonTTL = time.Minute; return c }(), 5},
		{"configured serial raised wins", withSerial(base, 100), 100},
		{"configured serial lowered: previous+1", withSerial(base, 50), 101},
		{"configured serial 2^31-1 ahead is newer", withSerial(base, 101+1<<31-1), 101 + 1<<31 - 1},
		{"configured serial near the wrap", withSerial(base, 0xffff_ffff), 0xffff_ffff},
		{"content change wraps to 0 (RFC 1982)", withSerial(changed, 0xffff_ffff), 0},
		{"configured serial 1 is newer than 0", withSerial(changed, 1), 1},
	}
	if got := servedSerial(t, s); got != 1 {
		t.Fatalf("initial serial %d, want 1 (the configured one)", got)
	}
	for _, st := range steps {
		if err := s.Update(st.cfg); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := servedSerial(t, s); got != st.want {
			t.Errorf("%s: serial %d, want %d", st.name, got, st.want)
		}
		if g := metricValue(t, s.met.serial.WithLabelValues("example.test.")); g != float64(st.want) {
			t.Errorf("%s: jitsu_dns_zone_serial %v, want %d", st.name, g, st.want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// startXFRServer starts a server with cfg on 127.0.0.1 and returns its address.
func startXFRServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	return startServer(t, cfg, Options{Summoner: newFakeSummoner()})
}

// transfer runs an AXFR (serial 0 and !ixfr) or IXFR from the local
// address src, signed with key/secret if key is set, and returns the
// records received.
func transfer(t *testing.T, server, src string, ixfr bool, serial uint32, key, secret string) ([]dns.RR, error) {
	t.Helper()
	m := new(dns.Msg)
	if ixfr {
		m.SetIxfr("example.test.", serial, "ns1.example.test.", "hostmaster.example.test.")
	} else {
		m.SetAxfr("example.test.")
	}
	tr := &dns.Transfer{}
	if key != "" {
		m.SetTsig(key, dns.HmacSHA256, 300, time.Now().Unix())
		tr.TsigSecret = map[string]string{key: secret}
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", server)
	if err != nil {
		t.Fatal(err)
	}
	tr.Conn = &dns.Conn{Conn: c}
	defer tr.Conn.Close()
	ch, err := tr.In(m, server)
	if err != nil {
		return nil, err
	}
	var rrs []dns.RR
	for env := range ch {
		if env.Error != nil {
			return rrs, env.Error
		}
		rrs = append(rrs, env.RR...)
	}
	return rrs, nil
}

// rawTransfer sends an AXFR request from src (signed with key/secret if
// key is set) and returns the first answer, its TSIG not checked.
func rawTransfer(t *testing.T, server, src, key, secret string) *dns.Msg {
	t.Helper()
	return rawTransferAt(t, server, src, key, secret, time.Now())
}

// rawTransferAt is rawTransfer with the request signed at the time at.
func rawTransferAt(t *testing.T, server, src, key, secret string, at time.Time) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetAxfr("example.test.")
	var wire []byte
	var err error
	if key != "" {
		m.SetTsig(key, dns.HmacSHA256, 300, at.Unix())
		wire, _, err = dns.TsigGenerate(m, secret, "", false)
	} else {
		wire, err = m.Pack()
	}
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", server)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	conn := &dns.Conn{Conn: c}
	if _, err := conn.Write(wire); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var r dns.Msg
	if err := r.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return &r
}

// zoneStrings is the expected content of the test zone as transferred:
// ZoneFile's records with the SOA's serial set.
func zoneStrings(t *testing.T, cfg Config, serial uint32) []string {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(ZoneFile(cfg.Zones[0], cfg.SummonTTL, cfg.Addrs)), "example.test.", "")
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if soa, isSOA := rr.(*dns.SOA); isSOA {
			soa.Serial = serial
		}
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	return rrStrings(rrs, true)
}

// TestTransfer checks AXFR and IXFR to an allowed secondary over TCP, the
// refusal of everyone else, and TSIG.
func TestTransfer(t *testing.T) {
	cfg := xfrConfig(t, false, "127.0.0.2:9")
	s, addr := startXFRServer(t, cfg)
	fs := s.opts.Summoner.(*fakeSummoner)

	rrs, err := transfer(t, addr, "127.0.0.2", false, 0, "", "")
	if err != nil {
		t.Fatalf("AXFR: %v", err)
	}
	if len(rrs) < 3 || rrs[0].Header().Rrtype != dns.TypeSOA || rrs[len(rrs)-1].Header().Rrtype != dns.TypeSOA {
		t.Fatalf("AXFR not framed by SOA records: %d records", len(rrs))
	}
	got := rrStrings(rrs[:len(rrs)-1], true)
	if want := zoneStrings(t, cfg, 1); !slices.Equal(got, want) {
		t.Errorf("AXFR content:%s\nwant:%s", fmtRRs(got), fmtRRs(want))
	}
	if !slices.Contains(got, "uk.wild.example.test.\t5\tin\ta\t10.213.0.5") {
		t.Errorf("unikernel name not transferred as an A record with the summon TTL")
	}
	for _, uk := range []string{"www", "apex", "v6"} {
		if n := fs.count(uk); n != 0 {
			t.Errorf("the transfer summoned %s %d times", uk, n)
		}
	}

	// A reload: IXFR from serial 1 gets the difference.
	cfg2 := withRecord(t, cfg, "new.example.test. 60 IN TXT \"added\"")
	if err := s.Update(cfg2); err != nil {
		t.Fatal(err)
	}
	rrs, err = transfer(t, addr, "127.0.0.2", true, 1, "", "")
	if err != nil {
		t.Fatalf("IXFR: %v", err)
	}
	var serials []uint32
	var other []string
	for _, rr := range rrs {
		if soa, ok := rr.(*dns.SOA); ok {
			serials = append(serials, soa.Serial)
		} else {
			other = append(other, rr.String())
		}
	}
	if !slices.Equal(serials, []uint32{2, 1, 2, 2}) || len(other) != 1 || !strings.Contains(other[0], "added") {
		t.Errorf("IXFR from 1: SOA serials %v (want [2 1 2 2]), records %v (want the new TXT)", serials, other)
	}
	rrs, err = transfer(t, addr, "127.0.0.2", true, 2, "", "")
	if err != nil || len(rrs) != 1 || rrs[0].(*dns.SOA).Serial != 2 {
		t.Errorf("IXFR from the current serial: %v %v, want the SOA alone", rrs, err)
	}
	rrs, err = transfer(t, addr, "127.0.0.2", true, 0xf000_0000, "", "")
	if err != nil || !slices.Equal(rrStrings(rrs[:max(len(rrs)-1, 0)], true), zoneStrings(t, cfg2, 2)) {
		t.Errorf("IXFR from an unknown serial: %d records, %v; want the whole zone (AXFR form)", len(rrs), err)
	}

	for _, c := range []struct {
		typ, result string
		want        float64
	}{{"AXFR", xfrFull, 1}, {"IXFR", xfrIncremental, 1}, {"IXFR", xfrUpToDate, 1}, {"IXFR", xfrFull, 1}} {
		if got := metricValue(t, s.met.transfers.WithLabelValues("example.test.", c.typ, c.result)); got != c.want {
			t.Errorf("jitsu_dns_transfers_total{type=%s,result=%s} = %v, want %v", c.typ, c.result, got, c.want)
		}
	}

	// Strangers get NOTAUTH, over TCP and UDP.
	if r := rawTransfer(t, addr, "127.0.0.3", "", ""); r.Rcode != dns.RcodeNotAuth || len(r.Answer) != 0 {
		t.Errorf("AXFR from a stranger: %s, want NOTAUTH", dns.RcodeToString[r.Rcode])
	}
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		c := &dns.Client{Net: "udp", Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}}
		m := new(dns.Msg)
		m.SetIxfr("example.test.", 1, "a.", "b.")
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		wantRcode, wantAnswers := dns.RcodeNotAuth, 0
		if src == "127.0.0.2" {
			wantRcode, wantAnswers = dns.RcodeSuccess, 1
		}
		if r.Rcode != wantRcode || len(r.Answer) != wantAnswers {
			t.Errorf("IXFR over UDP from %s: %s with %d answers, want %s with %d", src, dns.RcodeToString[r.Rcode], len(r.Answer),
				dns.RcodeToString[wantRcode], wantAnswers)
		}
	}
}

// TestTransferTSIG checks that a zone with a key transfers only to
// requests signed with it.
func TestTransferTSIG(t *testing.T) {
	cfg := xfrConfig(t, true, "127.0.0.2:9")
	_, addr := startXFRServer(t, cfg)
	wrong := base64.StdEncoding.EncodeToString([]byte("wrong-secret-wrong-secret-wrong!"))
	rrs, err := transfer(t, addr, "127.0.0.2", false, 0, "xfr.example.test.", testSecret)
	if err != nil {
		t.Fatalf("signed transfer: %v", err)
	}
	if !slices.Equal(rrStrings(rrs[:len(rrs)-1], true), zoneStrings(t, cfg, 1)) {
		t.Errorf("signed transfer: wrong content (%d records)", len(rrs))
	}
	tests := []struct {
		name, key, secret string
		skew              time.Duration
		tsigError         int  // -1: no TSIG record in the answer
		signed            bool // the answer's TSIG has a MAC
	}{
		{"unsigned", "", "", 0, -1, false},
		{"wrong secret", "xfr.example.test.", wrong, 0, dns.RcodeBadSig, false},
		{"unknown key name", "other.example.test.", testSecret, 0, dns.RcodeBadKey, false},
		{"clock off by 20 minutes", "xfr.example.test.", testSecret, -20 * time.Minute, dns.RcodeBadTime, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rawTransferAt(t, addr, "127.0.0.2", tt.key, tt.secret, time.Now().Add(tt.skew))
			tsigError, signed := -1, false
			if ts := r.IsTsig(); ts != nil {
				tsigError, signed = int(ts.Error), ts.MACSize > 0
			}
			if r.Rcode != dns.RcodeNotAuth || len(r.Answer) != 0 || tsigError != tt.tsigError || signed != tt.signed {
				t.Errorf("answer %s with %d records, TSIG error %d, signed %v; want NOTAUTH, none, %d, %v",
					dns.RcodeToString[r.Rcode], len(r.Answer), tsigError, signed, tt.tsigError, tt.signed)
			}
		})
	}
}

// TestTransferManyMessages checks a zone larger than one message.
func TestTransferManyMessages(t *testing.T) {
	cfg := xfrConfig(t, true, "127.0.0.2:9")
	for i := range 2000 {
		cfg = withRecord(t, cfg, fmt.Sprintf("n%d.example.test. 60 IN TXT \"record %d of a large zone\"", i, i))
	}
	_, addr := startXFRServer(t, cfg)
	rrs, err := transfer(t, addr, "127.0.0.2", false, 0, "xfr.example.test.", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(rrs)-1, len(zoneStrings(t, cfg, 1)); got != want {
		t.Errorf("%d records, want %d", got, want)
	}
}

// TestJournalBounds checks that the journal keeps at most maxJournalDiffs
// differences and that IXFR from a dropped serial falls back to AXFR.
func TestJournalBounds(t *testing.T) {
	var j []*ixfrDiff
	soa := func(n uint32) *dns.SOA {
		return &dns.SOA{Hdr: dns.RR_Header{Name: "example.test.", Rrtype: dns.TypeSOA}, Serial: n}
	}
	for i := range uint32(maxJournalDiffs + 10) {
		j = appendDiff(j, &ixfrDiff{from: soa(i), to: soa(i + 1)})
	}
	if len(j) != maxJournalDiffs || j[0].from.Serial != 10 {
		t.Fatalf("journal of %d, oldest from %d; want %d from 10", len(j), j[0].from.Serial, maxJournalDiffs)
	}
	x := &xfrData{soa: soa(maxJournalDiffs + 10), journal: j}
	if rrs := x.transferRecords(true, 5); len(rrs) != 2 {
		t.Errorf("IXFR from a dropped serial: %d records, want the AXFR form (2 SOAs)", len(rrs))
	}
	if rrs := x.transferRecords(true, 10); len(rrs) != 2+2*maxJournalDiffs {
		t.Errorf("IXFR from the oldest kept serial: %d records, want %d", len(rrs), 2+2*maxJournalDiffs)
	}
	big := &ixfrDiff{from: soa(1), to: soa(2), add: make([]dns.RR, maxJournalRRs)}
	if j = appendDiff(j, big); len(j) != 0 {
		t.Errorf("a difference larger than the bound is kept (%d)", len(j))
	}
}

// notified is one NOTIFY a fakeSecondary received.
type notified struct {
	from   string
	serial uint32
	signed bool
}

// fakeSecondary listens on 127.0.0.2 (UDP): it holds serial (answers SOA
// queries with it, signed), and records each NOTIFY, answering only every
// second one (the sender must retry).
type fakeSecondary struct {
	addr   string
	serial uint32
	mu     sync.Mutex
	seen   []notified
}

func startFakeSecondary(t *testing.T, serial uint32) *fakeSecondary {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSecondary{addr: pc.LocalAddr().String(), serial: serial}
	srv := &dns.Server{PacketConn: pc, TsigSecret: map[string]string{"xfr.example.test.": testSecret},
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg).SetReply(r)
			signed := r.IsTsig() != nil && w.TsigStatus() == nil
			if signed {
				m.SetTsig("xfr.example.test.", dns.HmacSHA256, 300, time.Now().Unix())
			}
			if r.Opcode == dns.OpcodeQuery {
				soa := mustRRs(t, "example.test. 60 IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60")[0].(*dns.SOA)
				soa.Serial = f.serial
				m.Answer = []dns.RR{soa}
				_ = w.WriteMsg(m)
				return
			}
			f.mu.Lock()
			g := notified{from: w.RemoteAddr().(*net.UDPAddr).IP.String(), signed: signed}
			if len(r.Answer) == 1 {
				g.serial = r.Answer[0].(*dns.SOA).Serial
			}
			f.seen = append(f.seen, g)
			n := len(f.seen)
			f.mu.Unlock()
			if n%2 == 1 {
				return // drop every first try: the sender must retry
			}
			_ = w.WriteMsg(m)
		})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return f
}

// wait returns the NOTIFY messages received once there are at least n.
func (f *fakeSecondary) wait(t *testing.T, n int) []notified {
	t.Helper()
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(10 * time.Millisecond) {
		f.mu.Lock()
		if len(f.seen) >= n {
			out := slices.Clone(f.seen)
			f.mu.Unlock()
			return out
		}
		f.mu.Unlock()
	}
	t.Fatalf("fewer than %d NOTIFY received: %v", n, f.seen)
	return nil
}

// startNotifying starts a server with cfg, its NOTIFY retries quick.
func startNotifying(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg, Options{Listen: []string{"127.0.0.1:0"}, Summoner: newFakeSummoner()})
	if err != nil {
		t.Fatal(err)
	}
	s.xfr.notify.firstWait = 50 * time.Millisecond
	s.xfr.notify.timeout = 200 * time.Millisecond
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestNotify checks that a change sends NOTIFY (signed) to each secondary,
// retried until it is answered.
func TestNotify(t *testing.T) {
	f := startFakeSecondary(t, 1)
	cfg := xfrConfig(t, true, f.addr)
	s := startNotifying(t, cfg)
	f.wait(t, 2) // start-up: the first is dropped, the retry answered
	if err := s.Update(withRecord(t, cfg, "new.example.test. 60 IN A 192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	g := f.wait(t, 4)
	time.Sleep(200 * time.Millisecond)
	want := []notified{{"127.0.0.1", 1, true}, {"127.0.0.1", 1, true}, {"127.0.0.1", 2, true}, {"127.0.0.1", 2, true}}
	if !slices.Equal(g, want) || !slices.Equal(f.wait(t, 4), want) {
		t.Errorf("NOTIFY received %v, want %v (no more after the answer)", f.wait(t, 4), want)
	}
	for result, want := range map[string]float64{"acknowledged": 2, "unanswered": 2, "given_up": 0} {
		if got := metricValue(t, s.met.notify.WithLabelValues("example.test.", result)); got != want {
			t.Errorf("jitsu_dns_notify_total{result=%s} = %v, want %v", result, got, want)
		}
	}
}

// TestSerialRaisedPastSecondary checks that a secondary holding a newer
// serial than the configured one (jitsu restarted after automatic bumps)
// makes jitsu continue after it.
func TestSerialRaisedPastSecondary(t *testing.T) {
	f := startFakeSecondary(t, 41)
	s := startNotifying(t, xfrConfig(t, true, f.addr))
	for start := time.Now(); servedSerial(t, s) != 42; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("serial %d, want 42 (after the secondary's 41)", servedSerial(t, s))
		}
	}
	for start := time.Now(); !slices.Contains(f.wait(t, 1), notified{"127.0.0.1", 42, true}); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no NOTIFY for serial 42: %v", f.wait(t, 1))
		}
	}
	rrs := s.snap.Load().zones["example.test."].xfr.transferRecords(true, 1)
	if len(rrs) != 4 || rrs[0].(*dns.SOA).Serial != 42 {
		t.Errorf("IXFR from 1: %v, want SOA 42, SOA 1, SOA 42, SOA 42 (no record changed)", rrs)
	}
}

// TestWildcardNeverLeadsToAUnikernel checks that a wildcard CNAME whose
// chain reaches a unikernel's name is refused (it would summon for any
// name).
func TestWildcardNeverLeadsToAUnikernel(t *testing.T) {
	for _, line := range []string{
		"*.any.example.test. 60 IN CNAME www.example.test.",
		"*.any.example.test. 60 IN CNAME touk.example.test.", // touk -> www
	} {
		_, err := New(withRecord(t, testConfig(t), line), Options{Listen: []string{"127.0.0.1:0"}})
		if err == nil || !strings.Contains(err.Error(), `unikernel "www"`) {
			t.Errorf("%s: error %v, want one naming unikernel www", line, err)
		}
	}
}
