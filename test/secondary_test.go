package test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/internal/knotconf"
	"github.com/jitsu-unikernel/jitsu/internal/testenv"
)

// knotdPath is where the Debian package knot installs knotd.
const knotdPath = "/usr/sbin/knotd"

// TestSecondaryAnswerSummons (issue 11): a knotd secondary in its own
// namespace transfers the zone from jitsu; a client there asks only the
// secondary for www's address and connects to it: the SYN, held at the
// armed address, boots www and is replayed. One boot, triggered by tcp,
// no query to jitsu, no reset. Then idle-out and DNS keep working and no
// domain runs that jitsu does not account for.
func TestSecondaryAnswerSummons(t *testing.T) {
	requireKnotd(t)
	clientNS := fmt.Sprintf("jitsu-sec-%d", os.Getpid())
	host, _, _ := strings.Cut(testenv.ClientHostCIDR, "/")
	sec, _, _ := strings.Cut(testenv.ClientCIDR, "/")
	w := newWorldWith(t, testenv.Options{ClientNS: clientNS}, true,
		unikernelConf{Name: "www", IP: "10.213.0.5", IdleTimeout: "3s"})
	w.data.DNSListen = []string{"127.0.0.1:5353", net.JoinHostPort(host, "5353")}
	w.data.Secondaries = []string{sec}
	w.writeConf()
	w.startJitsu()

	k := startKnotd(t, clientNS, sec, net.JoinHostPort(host, "5353"))
	secAddr := net.JoinHostPort(sec, "53")
	k.waitZone(t, secAddr)
	if n := w.metric("jitsu_dns_transfers_total", `result="full"`); n < 1 {
		t.Errorf("jitsu_dns_transfers_total{result=full} = %v, want the secondary's AXFR", n)
	}
	if s := w.status("www"); s.Boots != 0 || s.State != "stopped" {
		t.Fatalf("after the transfer: %s with %d boots, want stopped, never booted (transfers never summon)", s.State, s.Boots)
	}
	if ans := k.query(t, secAddr, "static.example.test.").Answer; len(ans) != 1 || !strings.HasSuffix(ans[0].String(), "192.0.2.7") {
		t.Errorf("secondary: static.example.test. A %v, want 192.0.2.7", ans)
	}

	aQueries, _ := w.metricOK("jitsu_dns_queries_total", `qtype="A"`)
	r := k.query(t, secAddr, "www.example.test.")
	if !r.Authoritative || len(r.Answer) != 1 {
		t.Fatalf("secondary: www.example.test. A: %v", r)
	}
	a, ok := r.Answer[0].(*dns.A)
	if !ok || a.A.String() != "10.213.0.5" || a.Hdr.Ttl != 1 {
		t.Fatalf("secondary: www.example.test. A %v, want 10.213.0.5 with summon_ttl 1", r.Answer[0])
	}
	client := nsHTTPClient(clientNS)
	start := time.Now()
	body, err := fetch(context.Background(), client, a.A.String(), 30*time.Second)
	if err != nil {
		t.Fatalf("GET from the client namespace after the secondary's answer: %v", netErr(err))
	}
	if !strings.Contains(body, page) {
		t.Fatalf("GET: unexpected page %q", body)
	}
	t.Logf("served %v after the secondary's answer", time.Since(start))
	if q, _ := w.metricOK("jitsu_dns_queries_total", `qtype="A"`); q != aQueries {
		t.Errorf("A queries to jitsu went from %v to %v: the client asks only the secondary", aQueries, q)
	}
	s := w.status("www")
	if s.Boots != 1 || s.LastBoot == nil || s.LastBoot.Trigger != "tcp" || s.LastBoot.FirstReplay.IsZero() {
		t.Errorf("status %+v (last boot %+v): want 1 boot, triggered by tcp with a replayed SYN", s, s.LastBoot)
	}
	w.checkSummons(map[string]float64{"tcp": 1})
	w.idleOutAndDNS("www", 2)
}

// TestSYNDuringStop (issue 11): a SYN that arrives while the unikernel is
// being stopped (stop_mode shutdown: the example kernel has no ACPI, so the
// stop waits shutdown_timeout, 5 s, then destroys) is held and served by
// the next boot: the GET succeeds after a second boot, triggered by tcp,
// with no reset.
func TestSYNDuringStop(t *testing.T) {
	w := newWorld(t, true, unikernelConf{Name: "www", IP: "10.213.0.5", IdleTimeout: "3s", StopMode: "shutdown"})
	w.startJitsu()

	addr := w.resolve("www.example.test")
	if _, err := w.get(addr, 30*time.Second); err != nil {
		t.Fatalf("first GET: %v", netErr(err))
	}
	firstID := w.domID(config.DomainPrefix + "www")
	w.waitState("www", 60*time.Second, "stopping")
	held := w.metric("jitsu_synproxy_syns_held_total")

	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		b, err := fetch(ctx, w.env.HTTPClient(), addr, 40*time.Second)
		done <- result{b, err}
	}()
	received := false
	defer func() {
		cancel()
		if !received {
			<-done
		}
	}()

	// The SYN was taken into the hold while the stop was still under way:
	// states only move forward from stopping (stopped, then starting).
	waitFor(t, 10*time.Second, "the SYN to be held", func() bool { return w.metric("jitsu_synproxy_syns_held_total") > held })
	if st := w.status("www").State; st != "stopping" {
		t.Fatalf("state %q once the SYN was held, want stopping: the SYN did not arrive during the stop", st)
	}
	res := <-done
	received = true
	if res.err != nil {
		t.Fatalf("GET sent during the stop: %v", netErr(res.err))
	}
	if !strings.Contains(res.body, page) {
		t.Fatalf("GET: unexpected page %q", res.body)
	}
	t.Logf("served %v after the SYN sent during the stop", time.Since(start))
	s := w.status("www")
	if s.Boots != 2 || s.LastBoot == nil || s.LastBoot.Trigger != "tcp" || s.LastBoot.FirstReplay.IsZero() {
		t.Errorf("status %+v (last boot %+v): want 2 boots, the second triggered by tcp with a replayed SYN", s, s.LastBoot)
	}
	if id := w.domID(config.DomainPrefix + "www"); id == firstID {
		t.Errorf("domain id %s unchanged: the page came from the domain being stopped, not from a new boot", id)
	}
	if n := w.metric("jitsu_unikernel_stops_total", `reason="idle"`); n != 1 {
		t.Errorf("jitsu_unikernel_stops_total{reason=idle} = %v, want 1", n)
	}
	w.checkSummons(map[string]float64{"dns": 1, "tcp": 1})
	w.idleOutAndDNS("www", 3)
}

// checkSummons checks the summons by trigger and that the SYN proxy sent
// no reset.
func (w *world) checkSummons(want map[string]float64) {
	w.t.Helper()
	for trig, n := range want {
		if got := w.metric("jitsu_unikernel_summons_total", `trigger="`+trig+`"`); got != n {
			w.t.Errorf("jitsu_unikernel_summons_total{trigger=%s} = %v, want %v", trig, got, n)
		}
	}
	if n := w.metric("jitsu_synproxy_resets_total"); n != 0 {
		w.t.Errorf("jitsu_synproxy_resets_total = %v, want 0", n)
	}
}

// idleOutAndDNS checks that idle-out and DNS keep working: name idles out
// and no domain runs; a query to jitsu boots it again (boot number boots,
// triggered by dns) and the page comes back; then no domain runs that
// jitsu does not account for.
func (w *world) idleOutAndDNS(name string, boots int) {
	w.t.Helper()
	w.waitState(name, 60*time.Second, "stopped")
	w.checkAccounted()
	if doms := w.domains(); len(doms) != 0 {
		w.t.Errorf("domains %v run after idle-out", doms)
	}
	addr := w.resolve(name + ".example.test")
	body, err := w.get(addr, 30*time.Second)
	if err != nil || !strings.Contains(body, page) {
		w.t.Fatalf("GET after a new query: %v (page %q)", err, body)
	}
	s := w.status(name)
	if s.Boots != boots || s.LastBoot == nil || s.LastBoot.Trigger != "dns" {
		w.t.Errorf("status %+v (last boot %+v): want %d boots, the last triggered by dns", s, s.LastBoot, boots)
	}
	w.checkAccounted()
}

// checkAccounted checks that every domain running in the namespace's
// libvirtd belongs to a unikernel that jitsu says runs (starting, ready,
// stopping or suspended), and that every ready unikernel has its domain.
func (w *world) checkAccounted() {
	w.t.Helper()
	running := map[string]bool{}
	for _, d := range w.domains() {
		running[d] = true
	}
	for _, s := range w.statuses() {
		dom := config.DomainPrefix + s.Name
		switch s.State {
		case "ready":
			if !running[dom] {
				w.t.Errorf("%s is ready but its domain %s does not run", s.Name, dom)
			}
		case "starting", "stopping", "suspended":
		default:
			continue
		}
		delete(running, dom)
	}
	for d := range running {
		w.t.Errorf("domain %s runs, and jitsu does not account for it", d)
	}
}

// nsHTTPClient returns an HTTP client whose connections start inside the
// network namespace ns.
func nsHTTPClient(ns string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := testenv.InNamespace(ns, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

// requireKnotd skips the test when knotd is not installed, or fails it in
// CI.
func requireKnotd(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(knotdPath); err != nil {
		if testenv.InCI() {
			t.Fatalf("CI=true: knotd is required (apt-get install knot): %v", err)
		}
		t.Skipf("knotd not installed (%v): install the Debian package knot", err)
	}
}

// knotd is a knotd secondary running in a network namespace.
type knotd struct {
	ns   string
	cmd  *exec.Cmd
	done chan struct{}
	log  *logBuf
}

// Write collects knotd's log.
func (k *knotd) Write(p []byte) (int, error) {
	k.log.add(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startKnotd starts knotd inside ns, listening on ip port 53, as a
// secondary of example.test. transferring from primary ("ip:port") and
// taking NOTIFY from its address. It is killed (and waited for) when the
// test ends, however it ends; the namespace's removal would kill it too.
func startKnotd(t *testing.T, ns, ip, primary string) *knotd {
	t.Helper()
	dir := t.TempDir()
	conf, err := knotconf.Secondary{Dir: dir, IP: ip, Port: 53, Zone: "example.test.", Primary: primary}.Conf()
	if err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// `ip netns exec` execs knotd: the pid is knotd's.
	k := &knotd{ns: ns, done: make(chan struct{}), log: &logBuf{}}
	k.cmd = exec.Command("ip", "netns", "exec", ns, knotdPath, "-c", confFile)
	k.cmd.Stderr = k
	k.cmd.Stdout = k
	if err := k.cmd.Start(); err != nil {
		t.Fatalf("start knotd: %v", err)
	}
	go func() { _ = k.cmd.Wait(); close(k.done) }()
	t.Cleanup(func() {
		_ = k.cmd.Process.Kill()
		<-k.done
		if t.Failed() {
			t.Logf("knotd log:\n%s", k.log)
		}
	})
	t.Logf("knotd pid %d in %s on %s@53, primary %s", k.cmd.Process.Pid, ns, ip, primary)
	return k
}

// exchange asks knotd at addr (inside its namespace) name's A record, or
// qtype's if given.
func (k *knotd) exchange(addr, name string, qtype uint16) (*dns.Msg, error) {
	var r *dns.Msg
	err := testenv.InNamespace(k.ns, func() error {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.RecursionDesired = false
		c := &dns.Client{Timeout: 2 * time.Second}
		var err error
		r, _, err = c.Exchange(m, addr)
		return err
	})
	return r, err
}

// query asks knotd for name's A record and fails t if it does not answer.
func (k *knotd) query(t *testing.T, addr, name string) *dns.Msg {
	t.Helper()
	r, err := k.exchange(addr, name, dns.TypeA)
	if err != nil {
		t.Fatalf("query the secondary for %s: %v", name, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("secondary: %s A: %s", name, dns.RcodeToString[r.Rcode])
	}
	return r
}

// waitZone waits until knotd at addr answers the zone's SOA: it has
// transferred the zone.
func (k *knotd) waitZone(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := k.exchange(addr, "example.test.", dns.TypeSOA)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
			t.Logf("secondary holds %v", r.Answer[0])
			return
		}
		select {
		case <-k.done:
			t.Fatalf("knotd exited before transferring the zone:\n%s", k.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("secondary at %s has no zone after 30 s (last answer %v, error %v)", addr, r, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
