package dnsserver

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func query(t *testing.T, netw, addr, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	c := &dns.Client{Net: netw, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(new(dns.Msg).SetQuestion(name, qtype), addr)
	return r, err
}

func TestServerServesUDPAndTCP(t *testing.T) {
	for _, tt := range []struct{ name, listen string }{
		{"ipv4", "127.0.0.1:0"},
		{"ipv6", "[::1]:0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "ipv6" {
				pc, err := net.ListenPacket("udp", tt.listen)
				if err != nil {
					t.Skipf("no IPv6 loopback on this host (%v): only the IPv6 half is skipped", err)
				}
				pc.Close()
			}
			s, _ := startServer(t, testConfig(t), Options{Listen: []string{tt.listen}, Summoner: newFakeSummoner()})
			addrs := s.Addrs()
			if len(addrs) != 2 {
				t.Fatalf("Addrs() = %v, want UDP and TCP", addrs)
			}
			for _, a := range addrs {
				r, err := query(t, a.Network(), a.String(), "www.example.test.", dns.TypeA)
				if err != nil {
					t.Fatalf("%s %s: %v", a.Network(), a, err)
				}
				if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.213.0.5" || !r.Authoritative {
					t.Errorf("%s %s: answer %v", a.Network(), a, r)
				}
			}
		})
	}
}

// TestServerUpdateLosesNoQuery swaps two configurations continuously while
// clients query over UDP and TCP: every query gets a correct answer.
func TestServerUpdateLosesNoQuery(t *testing.T) {
	s, addr := startTestServer(t, newFakeSummoner())
	cfgA := testConfig(t)
	cfgB := testConfig(t)
	cfgB.Zones[0].Records = append(cfgB.Zones[0].Records, mustRRs(t, "new.example.test. 60 IN A 192.0.2.99")...)
	stop := make(chan struct{})
	var updates atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cfg := cfgA
			if i%2 == 1 {
				cfg = cfgB
			}
			if err := s.Update(cfg); err != nil {
				t.Error(err)
				return
			}
			updates.Add(1)
		}
	}()
	var clients sync.WaitGroup
	for _, netw := range []string{"udp", "tcp", "udp", "tcp"} {
		clients.Add(1)
		go func() {
			defer clients.Done()
			c := &dns.Client{Net: netw, Timeout: 5 * time.Second}
			for i := range 300 {
				name, want := "mail.example.test.", "192.0.2.25"
				if i%3 == 0 {
					name, want = "www.example.test.", "10.213.0.5"
				}
				r, _, err := c.Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), addr)
				if err != nil {
					t.Errorf("%s query %d: %v", netw, i, err)
					return
				}
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != want {
					t.Errorf("%s query %d: %v", netw, i, r)
					return
				}
			}
		}()
	}
	clients.Wait()
	close(stop)
	wg.Wait()
	if updates.Load() < 2 {
		t.Errorf("only %d updates happened during the queries", updates.Load())
	}
	t.Logf("%d updates during 1200 queries", updates.Load())
}

// TestServerBlockingSummonDoesNotStall: while one Summon blocks, other
// names (and the same socket) keep being answered, over UDP and TCP.
func TestServerBlockingSummonDoesNotStall(t *testing.T) {
	fs := newFakeSummoner()
	fs.block = map[string]bool{"www": true}
	_, addr := startTestServer(t, fs)
	type result struct {
		r   *dns.Msg
		err error
	}
	pending := make(chan result, 4)
	for _, netw := range []string{"udp", "tcp", "udp", "tcp"} {
		go func() {
			c := &dns.Client{Net: netw, Timeout: 10 * time.Second}
			r, _, err := c.Exchange(new(dns.Msg).SetQuestion("www.example.test.", dns.TypeA), addr)
			pending <- result{r, err}
		}()
	}
	for fs.count("www") < 4 {
		time.Sleep(time.Millisecond)
	}
	for _, netw := range []string{"udp", "tcp"} {
		for _, name := range []string{"mail.example.test.", "v6.example.test."} {
			r, err := query(t, netw, addr, name, dns.TypeA)
			if err != nil || len(r.Answer) != 1 {
				t.Errorf("%s %s while a summon blocks: %v %v", netw, name, r, err)
			}
		}
	}
	select {
	case res := <-pending:
		t.Fatalf("blocked summon answered before release: %v %v", res.r, res.err)
	default:
	}
	close(fs.release)
	for range 4 {
		res := <-pending
		if res.err != nil || len(res.r.Answer) != 1 {
			t.Errorf("after release: %v %v", res.r, res.err)
		}
	}
}

// TestServerCloseWhileSummonBlocks: Close cancels the Summon context and
// returns; goleak (TestMain) checks that no goroutine is left.
func TestServerCloseWhileSummonBlocks(t *testing.T) {
	fs := newFakeSummoner()
	fs.block = map[string]bool{"www": true}
	s, addr := startTestServer(t, fs)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, _ := new(dns.Msg).SetQuestion("www.example.test.", dns.TypeA).Pack()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	for fs.count("www") < 1 {
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestServerStopsWithStartContext: cancelling the context given to Start
// (or Run) stops the server: its sockets are closed without a Close, and
// Run returns.
func TestServerStopsWithStartContext(t *testing.T) {
	for _, viaRun := range []bool{false, true} {
		t.Run(map[bool]string{false: "Start", true: "Run"}[viaRun], func(t *testing.T) {
			s, err := New(testConfig(t), Options{Listen: []string{"127.0.0.1:0"}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ran := make(chan error, 1)
			if viaRun {
				go func() { ran <- s.Run(ctx) }()
				select {
				case <-s.Ready():
				case err := <-ran:
					t.Fatalf("Run: %v", err)
				}
			} else if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			addrs := s.Addrs()
			if _, err := query(t, "udp", addrs[0].String(), "www.example.test.", dns.TypeSOA); err != nil {
				t.Fatalf("query before cancel: %v", err)
			}
			cancel()
			if viaRun {
				select {
				case err := <-ran:
					if err != nil {
						t.Errorf("Run after cancel: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Run did not return 10 s after its context was cancelled")
				}
			}
			// The sockets are closed: the same UDP and TCP ports can be bound
			// again (polled: closing is asynchronous after Start).
			var lerr error
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				var pc net.PacketConn
				if pc, lerr = net.ListenPacket("udp", addrs[0].String()); lerr != nil {
					continue
				}
				pc.Close()
				var ln net.Listener
				if ln, lerr = net.Listen("tcp", addrs[1].String()); lerr != nil {
					continue
				}
				ln.Close()
				break
			}
			if lerr != nil {
				t.Fatalf("the server still holds its sockets after its context was cancelled: %v", lerr)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestServerSummonAfter: unikernel names get SERVFAIL until every channel
// of Options.SummonAfter is closed; static names are answered before.
func TestServerSummonAfter(t *testing.T) {
	gate := make(chan struct{})
	_, addr := startServer(t, testConfig(t), Options{Summoner: newFakeSummoner(), SummonAfter: []<-chan struct{}{gate}})
	for _, tt := range []struct {
		name  string
		open  bool
		qname string
		qtype uint16
		rcode int
	}{
		{"static before", false, "example.test.", dns.TypeSOA, dns.RcodeSuccess},
		{"unikernel before", false, "www.example.test.", dns.TypeA, dns.RcodeServerFailure},
		{"unikernel after", true, "www.example.test.", dns.TypeA, dns.RcodeSuccess},
	} {
		if tt.open && gate != nil {
			close(gate)
			gate = nil
		}
		r, err := query(t, "udp", addr, tt.qname, tt.qtype)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if r.Rcode != tt.rcode {
			t.Errorf("%s: rcode %s, want %s", tt.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
		}
	}
}

func TestServerMetricsAndServfail(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, addr := startServer(t, testConfig(t), Options{Summoner: newFakeSummoner(), Registerer: reg})
	r, err := query(t, "udp", addr, "broken.example.test.", dns.TypeA)
	if err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("broken unikernel: %v %v, want SERVFAIL", r, err)
	}
	for range 3 {
		if r, err := query(t, "udp", addr, "mail.example.test.", dns.TypeA); err != nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("after SERVFAIL: %v %v", r, err)
		}
	}
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		c    prometheus.Counter
		want float64
	}{
		{s.met.queries.WithLabelValues("example.test.", "A", "SERVFAIL"), 1},
		{s.met.queries.WithLabelValues("example.test.", "A", "NOERROR"), 3},
		{s.met.summonErrors, 1},
		{s.met.dropped.WithLabelValues("short"), 1},
	}
	for _, ch := range checks {
		// The datagram is counted once a reader got to it.
		for i := 0; counterValue(t, ch.c) != ch.want && i < 500; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if got := counterValue(t, ch.c); got != ch.want {
			t.Errorf("%v = %v, want %v", ch.c, got, ch.want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"jitsu_dns_queries_total", "jitsu_dns_dropped_total", "jitsu_dns_summon_errors_total"} {
		if !names[n] {
			t.Errorf("%s not registered", n)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	base := func() Config { return testConfig(t) }
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no SOA", func(c *Config) {
			c.Zones[0].Records = c.Zones[0].Records[1:]
		}, "no SOA"},
		{"record outside zone", func(c *Config) {
			c.Zones[0].Records = append(c.Zones[0].Records, mustRRs(t, "www.other.org. 60 IN A 192.0.2.1")...)
		}, "outside zone"},
		{"CNAME and other data", func(c *Config) {
			c.Zones[0].Records = append(c.Zones[0].Records, mustRRs(t, "alias.example.test. 60 IN TXT x")...)
		}, "CNAME and other data"},
		{"unikernel outside zone", func(c *Config) {
			c.Zones[0].Unikernels = map[string]string{"x.other.org.": "x"}
		}, "outside zone"},
		{"unikernel below delegation", func(c *Config) {
			c.Zones[0].Unikernels = map[string]string{"x.sub.example.test.": "x"}
		}, "below delegation"},
		{"duplicate zone", func(c *Config) {
			c.Zones = append(c.Zones, c.Zones[0])
		}, "configured twice"},
		{"negative TTL", func(c *Config) { c.SummonTTL = -time.Second }, "negative"},
		{"bad origin", func(c *Config) { c.Zones[0].Origin = "a..b" }, "not a domain name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			tt.mutate(&cfg)
			_, err := New(cfg, Options{Listen: []string{"127.0.0.1:0"}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want error containing %q", err, tt.want)
			}
			s, err := New(base(), Options{Listen: []string{"127.0.0.1:0"}})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Update(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Update: %v, want error containing %q", err, tt.want)
			}
			if r := exchange(t, s, new(dns.Msg).SetQuestion("mail.example.test.", dns.TypeA), false); r == nil || len(r.Answer) != 1 {
				t.Errorf("old zones not kept after a failed Update: %v", r)
			}
		})
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
