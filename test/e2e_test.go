// Package test holds jitsu's end-to-end tests: the real jitsu binary serving
// DNS inside a network namespace, a real libvirtd in the same namespace
// booting the example unikernel under QEMU, real DNS and HTTP clients.
// They need root and `make image`; in CI (CI=true) a missing prerequisite
// fails them instead of skipping.
package test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/internal/testenv"
)

const page = "Served by the jitsu example unikernel"

// TestColdQueryThenGet: a query for a stopped unikernel is answered at
// once, and a GET sent right after it succeeds through the replayed SYN.
func TestColdQueryThenGet(t *testing.T) {
	w := newWorld(t, true, unikernelConf{Name: "www", IP: "10.213.0.5"})
	w.startJitsu()

	start := time.Now()
	addr := w.resolve("www.example.test")
	answered := time.Since(start)
	if addr != "10.213.0.5" {
		t.Fatalf("www resolved to %s, want 10.213.0.5", addr)
	}
	body, err := w.get(addr, 30*time.Second)
	if err != nil {
		t.Fatalf("GET right after the query: %v", netErr(err))
	}
	if !strings.Contains(body, page) {
		t.Fatalf("GET: unexpected page %q", body)
	}
	t.Logf("DNS answered in %v; first page %v after the query", answered, time.Since(start))

	// The connection went through the proxy: its SYN was held and replayed.
	if n := w.metric("jitsu_synproxy_syns_replayed_total"); n < 1 {
		t.Errorf("jitsu_synproxy_syns_replayed_total = %v, want >= 1", n)
	}
	if n := w.metric("jitsu_synproxy_resets_total"); n != 0 {
		t.Errorf("jitsu_synproxy_resets_total = %v, want 0", n)
	}
	s := w.status("www")
	if s.State != "ready" || s.Boots != 1 {
		t.Errorf("status: state %q boots %d, want ready and 1", s.State, s.Boots)
	}
	if s.LastBoot == nil || s.LastBoot.FirstReplay.IsZero() {
		t.Errorf("status: boot timeline %+v has no replayed SYN", s.LastBoot)
	}
}

// TestConcurrentColdClients: 50 clients at once on a cold name make one
// boot, and every one of them gets the page.
func TestConcurrentColdClients(t *testing.T) {
	w := newWorld(t, true, unikernelConf{Name: "www", IP: "10.213.0.5"})
	w.startJitsu()

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _, err := w.query("www.example.test")
			if err != nil {
				errs <- err
				return
			}
			if len(resp.Answer) != 1 {
				errs <- &dnsErr{resp}
				return
			}
			body, err := w.get(resp.Answer[0].(*dns.A).A.String(), 60*time.Second)
			if err == nil && !strings.Contains(body, page) {
				err = &pageErr{body}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			t.Errorf("client: %v", netErr(err))
		}
	}
	if s := w.status("www"); s.Boots != 1 {
		t.Errorf("boots = %d, want 1", s.Boots)
	}
	if got := len(w.domains()); got != 1 {
		t.Errorf("%d domains running, want 1", got)
	}
	t.Logf("%d/%d clients got the page", n-failed, n)
}

// TestIdleOutAndStopModes: each stop mode takes an idle unikernel down, and
// the next query brings it back. The cases run in one jitsu, one after the
// other, so guests come and go beside each other: a suspended guest that
// resumes after another one's tap left the bridge must still reach its
// gateway (jitsu pins the bridge's MAC address for that).
func TestIdleOutAndStopModes(t *testing.T) {
	cases := []struct {
		name, mode, stopped string
	}{
		{"dest", "destroy", "stopped"},
		{"susp", "suspend", "suspended"},
		{"save", "save", "saved"},
	}
	var uks []unikernelConf
	for i, c := range cases {
		uks = append(uks, unikernelConf{Name: c.name, IP: "10.213.0." + string(rune('5'+i)), StopMode: c.mode, IdleTimeout: "3s"})
	}
	w := newWorld(t, true, uks...)
	w.startJitsu()

	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			w := *w
			w.t = t
			addr := w.resolve(c.name + ".example.test")
			if _, err := w.get(addr, 30*time.Second); err != nil {
				t.Fatalf("first GET: %v", netErr(err))
			}
			served := time.Now()
			w.waitState(c.name, 60*time.Second, c.stopped)
			t.Logf("%s: idled out %v after the last GET (idle_timeout 3s)", c.mode, time.Since(served))
			if c.mode == "destroy" {
				for _, d := range w.domains() {
					if d == "jitsu-"+c.name {
						t.Fatalf("domain %s still running after idle-out", d)
					}
				}
			}
			start := time.Now()
			addr = w.resolve(c.name + ".example.test")
			body, err := w.get(addr, 30*time.Second)
			if err != nil {
				t.Fatalf("GET after idle-out: %v", netErr(err))
			}
			if !strings.Contains(body, page) {
				t.Fatalf("GET after idle-out: unexpected page %q", body)
			}
			t.Logf("%s: back and serving %v after the query", c.mode, time.Since(start))
			if s := w.status(c.name); s.Boots != 2 {
				t.Errorf("boots = %d, want 2 (boot, then %s)", s.Boots, c.mode)
			}
		})
	}
}

// TestBrokenImage: a unikernel that never becomes ready times out, its
// held clients are reset at once, later queries back off with SERVFAIL,
// and another unikernel keeps working.
func TestBrokenImage(t *testing.T) {
	w := newWorld(t, true,
		unikernelConf{Name: "www", IP: "10.213.0.5"},
		// The multiboot test kernel prints a line and halts: never listens.
		unikernelConf{Name: "broken", IP: "10.213.0.9", Kernel: testenv.MultibootKernel, BootTimeout: "4s"},
	)
	w.startJitsu()

	addr := w.resolve("broken.example.test")
	start := time.Now()
	_, err := w.get(addr, 30*time.Second)
	if err == nil {
		t.Fatal("GET from the broken unikernel succeeded")
	}
	failedAfter := time.Since(start)
	if !isRefused(err) {
		t.Errorf("GET from the broken unikernel: %v, want a refused connection (RST from the dropped hold)", netErr(err))
	}
	t.Logf("client failed %v after connecting (boot timeout 4s)", failedAfter)
	w.waitState("broken", 10*time.Second, "failed")

	resp, rtt, err := w.query("broken.example.test")
	if err != nil {
		t.Fatalf("query during backoff: %v", err)
	}
	if resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("query during backoff: rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
	t.Logf("backoff answer in %v", rtt)

	body, err := w.get(w.resolve("www.example.test"), 30*time.Second)
	if err != nil || !strings.Contains(body, page) {
		t.Fatalf("www while broken backs off: %v %q", err, body)
	}
	if n := w.metric("jitsu_unikernel_failures_total", `unikernel="broken"`); n < 1 {
		t.Errorf("jitsu_unikernel_failures_total{broken} = %v, want >= 1", n)
	}
}

// TestSynFloodWhileHeld: a flood of connection attempts at a unikernel that
// is still booting stays within the SYN proxy's bounds (the excess is
// dropped and counted), and DNS keeps answering meanwhile.
func TestSynFloodWhileHeld(t *testing.T) {
	w := newWorld(t, true,
		// Never ready: its address stays held for the whole boot timeout.
		unikernelConf{Name: "broken", IP: "10.213.0.9", Kernel: testenv.MultibootKernel, BootTimeout: "15s"},
	)
	w.startJitsu()
	addr := w.resolve("broken.example.test")

	// 2000 connects from distinct source ports, each a held SYN until the
	// per-address bound (synproxy.max_per_address, 64 by default) is
	// reached.
	const flood = 2000
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < flood; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := w.env.DialContext(ctx, "tcp", addr+":80")
			if err == nil {
				c.Close()
			}
		}()
	}
	// While the flood is held, DNS answers at once.
	time.Sleep(time.Second)
	for i := 0; i < 20; i++ {
		resp, rtt, err := w.query("static.example.test")
		if err != nil || resp.Rcode != dns.RcodeSuccess {
			t.Fatalf("query during the flood: %v %v", err, resp)
		}
		if i == 0 {
			t.Logf("DNS answer during the flood in %v", rtt)
		}
	}
	held := w.metric("jitsu_synproxy_held")
	overflow := w.metric("jitsu_synproxy_syns_dropped_total", `reason="overflow"`)
	t.Logf("held %v SYNs, %v dropped for overflow", held, overflow)
	if held > 64 {
		t.Errorf("jitsu_synproxy_held = %v, above the per-address bound 64", held)
	}
	if overflow < 1 {
		t.Errorf("no SYN dropped for overflow after %d connects", flood)
	}
	cancel()
	wg.Wait()
}

// TestKillAndAdopt: a jitsu killed with SIGKILL while it holds SYNs for a
// booting unikernel leaves its VMs running and its nft table and pinned
// neighbours in the kernel; the next one removes those (the held address
// no longer has a hold nor a pinned entry), adopts the VMs still
// configured without booting them again, and destroys those no longer
// configured.
func TestKillAndAdopt(t *testing.T) {
	w := newWorld(t, true,
		unikernelConf{Name: "www", IP: "10.213.0.5"},
		unikernelConf{Name: "gone", IP: "10.213.0.6"},
		// Boots a kernel that never listens: its SYNs stay held.
		unikernelConf{Name: "held", IP: "10.213.0.7", Kernel: testenv.MultibootKernel, BootTimeout: "300s"},
	)
	first := w.startJitsu()
	for _, n := range []string{"www", "gone"} {
		if _, err := w.get(w.resolve(n+".example.test"), 30*time.Second); err != nil {
			t.Fatalf("GET %s: %v", n, netErr(err))
		}
	}
	id := w.domID("jitsu-www")

	// A client connects to "held" while it boots: its SYN is held.
	heldIP := w.resolve("held.example.test")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	dialed := make(chan struct{})
	go func() {
		defer close(dialed)
		if c, err := w.env.DialContext(ctx, "tcp", heldIP+":80"); err == nil {
			c.Close()
		}
	}()
	waitFor(t, 30*time.Second, "a SYN held for held", func() bool { return w.metric("jitsu_synproxy_held") >= 1 })
	if !w.heldInTable(heldIP) || !w.pinned(heldIP) {
		t.Fatalf("before the kill: %s held in nft %v, pinned %v; want both", heldIP, w.heldInTable(heldIP), w.pinned(heldIP))
	}
	first.kill(t)
	// What the dead jitsu leaves: the table (whose queue rule now lets
	// SYNs pass), the hold and the pinned neighbour.
	if !w.heldInTable(heldIP) || !w.pinned(heldIP) {
		t.Fatalf("after SIGKILL: %s held in nft %v, pinned %v; the kill should leave both", heldIP, w.heldInTable(heldIP), w.pinned(heldIP))
	}
	cancel()
	<-dialed
	if got := len(w.domains()); got != 3 {
		t.Fatalf("%d domains after SIGKILL, want the 3 still running", got)
	}

	// The next jitsu no longer has "gone" nor "held" in its config.
	w.data.Unikernels = w.data.Unikernels[:1]
	w.writeConf()
	second := w.startJitsu()
	w.waitState("www", 30*time.Second, "ready")
	if got := w.domID("jitsu-www"); got != id {
		t.Errorf("jitsu-www has domain id %s after the restart, was %s: booted twice", got, id)
	}
	if w.heldInTable(heldIP) {
		t.Errorf("after the restart %s is still held in the nft table", heldIP)
	}
	for _, ip := range []string{heldIP, "10.213.0.6"} {
		if w.pinned(ip) {
			t.Errorf("after the restart %s still has a permanent neighbour entry", ip)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		doms := w.domains()
		if len(doms) == 1 && doms[0] == "jitsu-www" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("domains %v after the restart, want only jitsu-www", doms)
		}
		time.Sleep(100 * time.Millisecond)
	}
	body, err := w.get("10.213.0.5", 10*time.Second)
	if err != nil || !strings.Contains(body, page) {
		t.Fatalf("GET adopted www: %v %q", err, body)
	}
	if s := w.status("www"); s.Boots != 0 {
		t.Errorf("adopted www counts %d boots in the new jitsu, want 0", s.Boots)
	}

	second.stop(t)
	out, err := w.env.Command(t.Context(), "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "jitsu") {
		t.Errorf("nft tables left after jitsu stopped:\n%s", out)
	}
	out, _ = w.env.Command(t.Context(), "ip", "neigh", "show", "nud", "permanent").CombinedOutput()
	if strings.TrimSpace(string(out)) != "" {
		t.Errorf("permanent neighbour entries left after jitsu stopped:\n%s", out)
	}
}

// TestLibvirtdRestart: while libvirtd is down jitsu keeps answering DNS;
// once it is back jitsu reconnects by itself, still tracks the unikernel
// that ran through the restart (same domain, not booted again), idles it
// out, and boots again.
func TestLibvirtdRestart(t *testing.T) {
	w := newWorld(t, true,
		unikernelConf{Name: "www", IP: "10.213.0.5", IdleTimeout: "20s"},
		unikernelConf{Name: "late", IP: "10.213.0.6"},
	)
	w.startJitsu()
	if _, err := w.get(w.resolve("www.example.test"), 30*time.Second); err != nil {
		t.Fatalf("GET www: %v", netErr(err))
	}
	id := w.domID("jitsu-www")
	boots := w.status("www").Boots

	if err := w.env.StopLibvirtd(); err != nil {
		t.Fatalf("stop libvirtd: %v", err)
	}
	// DNS keeps answering, static names and running unikernels alike.
	for _, name := range []string{"static.example.test", "www.example.test"} {
		resp, _, err := w.query(name)
		if err != nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
			t.Fatalf("query %s with libvirtd down: %v %v", name, err, resp)
		}
	}
	if err := w.env.StartLibvirtd(t.Context()); err != nil {
		t.Fatalf("restart libvirtd: %v", err)
	}
	// A new boot works once jitsu has reconnected; the first queries may
	// come before that and fail, so retry for a while.
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, _, err := w.query("late.example.test")
		if err == nil && resp.Rcode == dns.RcodeSuccess {
			body, err := w.get("10.213.0.6", 30*time.Second)
			if err == nil && strings.Contains(body, page) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no boot after libvirtd came back (last: %v %v)", err, resp)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// www ran through the restart: jitsu still tracks it (same domain, not
	// booted again) and idles it out once nobody uses it: the domain goes,
	// the stop comes an idle timeout after the last activity, and no boot
	// was added.
	if got := w.domID("jitsu-www"); got != id {
		t.Errorf("jitsu-www has domain id %s after the libvirtd restart, was %s", got, id)
	}
	st := w.waitState("www", 90*time.Second, "stopped")
	if idle := st.Since.Sub(st.LastActivity); idle < 19*time.Second {
		t.Errorf("www stopped %v after its last activity, want an idle-out after 20s (%+v)", idle, st)
	}
	if st.Boots != boots {
		t.Errorf("www counts %d boots after the libvirtd restart, want still %d: booted again", st.Boots, boots)
	}
	waitFor(t, 30*time.Second, "jitsu-www gone from libvirt", func() bool { return !slices.Contains(w.domains(), "jitsu-www") })
}

// TestStartWhileLibvirtdDown: jitsu started while libvirtd is down serves
// its static records at once, answers SERVFAIL for unikernel names, and
// boots them as soon as libvirtd is up.
func TestStartWhileLibvirtdDown(t *testing.T) {
	w := newWorld(t, true, unikernelConf{Name: "www", IP: "10.213.0.5"})
	if err := w.env.StopLibvirtd(); err != nil {
		t.Fatalf("stop libvirtd: %v", err)
	}
	w.spawnJitsu()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, _, err := w.query("static.example.test")
		if err == nil && resp.Rcode == dns.RcodeSuccess && len(resp.Answer) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no static answer while libvirtd is down: %v %v", err, resp)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, _, err := w.query("www.example.test")
	if err != nil || resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("unikernel name while libvirtd is down: %v %v, want SERVFAIL", err, resp)
	}
	if err := w.env.StartLibvirtd(t.Context()); err != nil {
		t.Fatalf("start libvirtd: %v", err)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		resp, _, err := w.query("www.example.test")
		if err == nil && resp.Rcode == dns.RcodeSuccess {
			body, err := w.get("10.213.0.5", 30*time.Second)
			if err != nil || !strings.Contains(body, page) {
				t.Fatalf("GET after libvirtd came up: %v %q", err, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("www not summonable after libvirtd came up: %v %v", err, resp)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type dnsErr struct{ m *dns.Msg }

func (e *dnsErr) Error() string { return "unexpected DNS answer: " + e.m.String() }

type pageErr struct{ body string }

func (e *pageErr) Error() string { return "unexpected page: " + e.body }

// TestSecondDaemonRefused: a second jitsu with the same config (the same
// instance id) refuses to start and touches nothing: the first keeps
// serving, SYN proxy included, and its nftables table stays.
func TestSecondDaemonRefused(t *testing.T) {
	w := newWorld(t, true, unikernelConf{Name: "www", IP: "10.213.0.5"})
	w.startJitsu()
	second := w.spawnJitsu()
	select {
	case <-second.done:
	case <-time.After(30 * time.Second):
		t.Fatal("a second jitsu with the same instance id still runs after 30 s")
	}
	if second.err == nil {
		t.Error("the second jitsu exited with status 0")
	}
	if log := second.log.String(); !strings.Contains(log, "another jitsu with instance id") {
		t.Errorf("the second jitsu's log does not say why it refused:\n%s", log)
	}
	out, err := w.env.Command(t.Context(), "nft", "list", "tables").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "jitsu_") {
		t.Errorf("the first jitsu's table is gone after the second one's refusal: %v\n%s", err, out)
	}
	body, err := w.get(w.resolve("www.example.test"), 30*time.Second)
	if err != nil || !strings.Contains(body, page) {
		t.Fatalf("GET from the first jitsu after the second one's refusal: %v %q", netErr(err), body)
	}
	if n := w.metric("jitsu_synproxy_syns_replayed_total"); n < 1 {
		t.Errorf("jitsu_synproxy_syns_replayed_total = %v: the first jitsu's SYN proxy no longer holds", n)
	}
}
