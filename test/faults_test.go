package test

// Fault injection (issue 15): libvirtd frozen, killed and restarted, QEMU
// killed, a lost stop event, reloads that move an address, two daemons on
// one host, guest chatter. Every test ends with checkInvariants.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/control"
	"github.com/jitsu-unikernel/jitsu/internal/testenv"
)

// monitor watches one jitsu while a fault is injected: it queries a
// static name every 200 ms (each answer due within 1 s) and samples the
// budget gauges, so that checkInvariants can tell whether DNS answered
// throughout and the budget was never exceeded.
type monitor struct {
	w      *world
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	queries    int
	failures   []string
	slowest    time.Duration
	maxRunning float64
}

// watch starts a monitor of w's jitsu; checkInvariants stops it.
func watch(w *world) *monitor {
	ctx, cancel := context.WithCancel(context.Background())
	m := &monitor{w: w, cancel: cancel, done: make(chan struct{})}
	w.t.Cleanup(m.stop)
	go m.run(ctx)
	return m
}

func (m *monitor) run(ctx context.Context) {
	defer close(m.done)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rtt, err := m.queryStatic()
		running, serr := m.budgetRunning()
		m.mu.Lock()
		m.queries++
		if err != nil {
			m.failures = append(m.failures, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
		}
		m.slowest = max(m.slowest, rtt)
		if serr == nil {
			m.maxRunning = max(m.maxRunning, running)
		}
		m.mu.Unlock()
	}
}

// queryStatic asks for static.example.test and wants its answer within 1 s.
func (m *monitor) queryStatic() (time.Duration, error) {
	var resp *dns.Msg
	var rtt time.Duration
	start := time.Now()
	err := m.w.env.Do(func() error {
		q := new(dns.Msg)
		q.SetQuestion("static.example.test.", dns.TypeA)
		var err error
		resp, _, err = (&dns.Client{Timeout: time.Second}).Exchange(q, m.w.dnsAddr())
		return err
	})
	rtt = time.Since(start)
	switch {
	case err != nil:
		return rtt, err
	case resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1:
		return rtt, fmt.Errorf("rcode %s, %d answers", dns.RcodeToString[resp.Rcode], len(resp.Answer))
	case rtt > time.Second:
		return rtt, fmt.Errorf("answered after %v", rtt)
	}
	return rtt, nil
}

// budgetRunning scrapes jitsu_budget_running.
func (m *monitor) budgetRunning() (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.w.data.Metrics+"/metrics", nil)
	resp, err := m.w.env.HTTPClient().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "jitsu_budget_running" {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("no jitsu_budget_running in the metrics")
}

// count is how many queries the monitor has sent.
func (m *monitor) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.queries
}

// stop stops the monitor and waits for it; it is safe to call twice.
func (m *monitor) stop() {
	m.cancel()
	<-m.done
}

// checkInvariants stops the monitors and checks what must hold after any
// fault, waiting up to 30 s for jitsu to converge (the reconciler runs
// every 10 s): every running domain is one a jitsu accounts for (its
// unikernel is starting, ready, stopping or suspended), no unikernel is
// ready without a running domain, no address of a ready unikernel is held
// in its jitsu's nft table, no neighbour entry is pinned for an address no
// table holds; and, over the whole test, DNS answered the static name
// within 1 s every time and the running budget was never exceeded.
// Domains named in ignore (a stopped daemon's) are left out.
func checkInvariants(t *testing.T, mons []*monitor, ignore ...string) {
	t.Helper()
	for _, m := range mons {
		// At least 5 queries, however short the test after watch.
		for i := 0; i < 40 && m.count() < 5; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		m.stop()
		m.mu.Lock()
		t.Logf("monitor of %s: %d static queries, %d failed, slowest %v; budget running at most %v",
			m.w.dnsAddr(), m.queries, len(m.failures), m.slowest.Round(time.Millisecond), m.maxRunning)
		if m.queries < 5 {
			t.Errorf("monitor of %s sent only %d queries", m.w.dnsAddr(), m.queries)
		}
		if len(m.failures) > 0 {
			t.Errorf("DNS did not answer the static name %d times out of %d: %s", len(m.failures), m.queries,
				strings.Join(m.failures[:min(5, len(m.failures))], "; "))
		}
		if lim := m.w.data.MaxRunning; lim > 0 && m.maxRunning > float64(lim) {
			t.Errorf("jitsu_budget_running reached %v, above max_running %d", m.maxRunning, lim)
		}
		m.mu.Unlock()
	}
	var bad []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		bad = violations(mons, ignore)
		if len(bad) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, v := range bad {
		t.Errorf("invariant: %s", v)
	}
}

// violations lists the invariants that do not hold right now.
func violations(mons []*monitor, ignore []string) []string {
	var bad []string
	doms := slices.DeleteFunc(mons[0].w.domains(), func(d string) bool { return slices.Contains(ignore, d) })
	states := map[string]control.UnikernelStatus{}
	var tables []string
	for _, m := range mons {
		for _, s := range m.w.statuses() {
			states[s.Name] = s
		}
		tables = append(tables, m.w.nftTable())
	}
	for _, d := range doms {
		s, ok := states[strings.TrimPrefix(d, "jitsu-")]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("domain %s runs and no jitsu accounts for it", d))
		case !slices.Contains([]string{"starting", "ready", "stopping", "suspended"}, s.State):
			bad = append(bad, fmt.Sprintf("domain %s runs while jitsu has %s %s", d, s.Name, s.State))
		}
	}
	for _, s := range states {
		if s.State != "ready" {
			continue
		}
		if !slices.Contains(doms, "jitsu-"+s.Name) {
			bad = append(bad, fmt.Sprintf("%s is ready without a running domain", s.Name))
		}
		for _, a := range s.Addrs {
			for _, tb := range tables {
				if mons[0].w.heldIn(tb, a) {
					bad = append(bad, fmt.Sprintf("%s is ready and its address %s is held in table %s", s.Name, a, tb))
				}
			}
		}
	}
	for _, m := range mons {
		if lim := m.w.data.MaxRunning; lim > 0 {
			n := 0
			for _, u := range m.w.data.Unikernels {
				if slices.Contains(doms, "jitsu-"+u.Name) {
					n++
				}
			}
			if n > lim {
				bad = append(bad, fmt.Sprintf("%d domains of %s run, above max_running %d", n, m.w.conf, lim))
			}
		}
	}
	for _, ip := range mons[0].w.pinnedAll() {
		held := false
		for _, tb := range tables {
			held = held || mons[0].w.heldIn(tb, ip)
		}
		if !held {
			bad = append(bad, fmt.Sprintf("neighbour %s is pinned and no table holds it", ip))
		}
	}
	return bad
}

// heldIn reports whether ip is in the held set of its family in table.
func (w *world) heldIn(table, ip string) bool {
	set := "held4"
	if strings.Contains(ip, ":") {
		set = "held6"
	}
	out, err := w.env.Command(context.Background(), "nft", "list", "set", "inet", table, set).CombinedOutput()
	if err != nil {
		return false
	}
	for _, f := range strings.FieldsFunc(string(out), func(r rune) bool { return r == ' ' || r == ',' || r == '{' || r == '}' || r == '\n' || r == '\t' }) {
		if f == ip {
			return true
		}
	}
	return false
}

// pinnedAll lists the addresses with a permanent neighbour entry on the
// bridge.
func (w *world) pinnedAll() []string {
	w.t.Helper()
	out, err := w.env.Command(context.Background(), "ip", "neigh", "show", "dev", w.env.Bridge, "nud", "permanent").CombinedOutput()
	if err != nil {
		w.t.Fatalf("ip neigh show: %v\n%s", err, out)
	}
	var ips []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			ips = append(ips, f[0])
		}
	}
	return ips
}

// control runs fn with a connection to w's control socket.
func (w *world) control(ctx context.Context, fn func(*control.Client) error) error {
	c, err := control.Dial(ctx, w.socket)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// reload asks w's jitsu to reload its config.
func (w *world) reload() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.control(ctx, func(c *control.Client) error { return c.Reload(ctx) }); err != nil {
		w.t.Fatalf("reload: %v", err)
	}
}

// stopAsync asks w's jitsu to stop name and returns at once; the result
// comes on the channel.
func (w *world) stopAsync(name string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		errc <- w.control(ctx, func(c *control.Client) error { return c.Stop(ctx, name, "") })
	}()
	return errc
}

// serveEventually queries name and GETs its address until the page comes
// back, for up to timeout: the way to say "a later query and GET boot it
// again" when the first tries may meet a backoff.
func (w *world) serveEventually(name string, timeout time.Duration) string {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		resp, _, err := w.query(name + ".example.test")
		if err == nil && resp.Rcode == dns.RcodeSuccess && len(resp.Answer) == 1 {
			addr := resp.Answer[0].(*dns.A).A.String()
			body, err := w.get(addr, 30*time.Second)
			if err == nil && strings.Contains(body, page) {
				return addr
			}
			last = fmt.Sprintf("GET %s: %v", addr, netErr(err))
		} else {
			last = fmt.Sprintf("query: %v %v", err, resp)
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s not served within %v (last: %s)", name, timeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// startFaults starts jitsu with uks, as many as may run at once, and a
// monitor, and GETs the page of serve; it returns serve's address.
func startFaults(t *testing.T, serve string, uks ...unikernelConf) (*world, *monitor, string) {
	t.Helper()
	w := newWorld(t, true, uks...)
	w.data.MaxRunning = len(uks)
	w.writeConf()
	w.startJitsu()
	mon := watch(w)
	addr := w.resolve(serve + ".example.test")
	if _, err := w.get(addr, 30*time.Second); err != nil {
		t.Fatalf("GET %s: %v", serve, netErr(err))
	}
	return w, mon, addr
}

// awaitStop logs what the stop of name that stopAsync began returned, or
// fails t if it is still pending 60 s after libvirtd came back.
func awaitStop(t *testing.T, name string, stopped <-chan error) {
	t.Helper()
	select {
	case err := <-stopped:
		t.Logf("stop %s returned: %v", name, err)
	case <-time.After(60 * time.Second):
		t.Errorf("stop %s still pending 60 s after libvirtd came back", name)
	}
}

// hasDomain reports whether the domain of unikernel name runs.
func (w *world) hasDomain(name string) bool { return slices.Contains(w.domains(), "jitsu-"+name) }

// signalLibvirtd sends sig to the sandbox's libvirtd.
func signalLibvirtd(t *testing.T, w *world, sig syscall.Signal) {
	t.Helper()
	pid := w.env.LibvirtdPid()
	if pid == 0 {
		t.Fatal("libvirtd is not running")
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("signal %v to libvirtd (pid %d): %v", sig, pid, err)
	}
}

// TestFaultLibvirtdFrozen: libvirtd stopped with SIGSTOP for 30 s while a
// boot and a stop are in flight. DNS answers throughout; once libvirtd
// runs again, the stopped unikernel's domain is gone and the other one
// serves (at once, or after a boot that timed out and is retried).
func TestFaultLibvirtdFrozen(t *testing.T) {
	w, mon, _ := startFaults(t, "halt",
		unikernelConf{Name: "boot", IP: "10.213.0.5"},
		unikernelConf{Name: "halt", IP: "10.213.0.6"},
	)

	// The boot and the stop start, then libvirtd freezes under them.
	w.resolve("boot.example.test")
	stopped := w.stopAsync("halt")
	waitFor(t, 5*time.Second, "the stop to begin", func() bool {
		return strings.Contains(w.last.log.String(), `"unikernel":"halt","from":"ready","to":"stopping"`)
	})
	signalLibvirtd(t, w, syscall.SIGSTOP)
	frozen := true
	thaw := func() {
		if frozen {
			signalLibvirtd(t, w, syscall.SIGCONT)
			frozen = false
		}
	}
	defer thaw()
	t.Logf("libvirtd frozen: boot %s, halt %s", w.status("boot").State, w.status("halt").State)
	time.Sleep(30 * time.Second)
	t.Logf("after 30 s: boot %s (%s), halt %s (%s)", w.status("boot").State, w.status("boot").LastError,
		w.status("halt").State, w.status("halt").LastError)
	thaw()

	awaitStop(t, "halt", stopped)
	// The destroy that hung completes once libvirtd runs: the domain goes.
	// If the reconciler adopted the domain just before (it still ran),
	// its end reads as a failed boot: "failed", with a short backoff.
	st := w.waitState("halt", 60*time.Second, "stopped", "failed")
	t.Logf("halt ends %s (%s)", st.State, st.LastError)
	waitFor(t, 30*time.Second, "jitsu-halt gone", func() bool { return !w.hasDomain("halt") })
	w.serveEventually("boot", 90*time.Second)
	t.Logf("boot serves after the freeze; boots %d", w.status("boot").Boots)
	checkInvariants(t, []*monitor{mon})
}

// TestFaultLibvirtdKilledDuringStop: libvirtd is killed (SIGKILL) while a
// graceful stop waits for a guest that ignores ACPI, and started again.
// jitsu ends with a consistent view (the domain stopped, or adopted as
// running), and the unikernel serves again.
func TestFaultLibvirtdKilledDuringStop(t *testing.T) {
	w, mon, _ := startFaults(t, "www", unikernelConf{Name: "www", IP: "10.213.0.5", StopMode: "shutdown"})
	// The status shows a state once its actions are done, so "stopping"
	// never shows while the stop waits: the log says when it began.
	stopped := w.stopAsync("www")
	waitFor(t, 10*time.Second, "the stop to begin", func() bool {
		return strings.Contains(w.last.log.String(), `"from":"ready","to":"stopping"`)
	})
	time.Sleep(time.Second) // inside shutdown_timeout (5 s)
	signalLibvirtd(t, w, syscall.SIGKILL)
	t.Logf("libvirtd killed while www is %s", w.status("www").State)
	time.Sleep(5 * time.Second)
	t.Logf("5 s later: www %s (%s)", w.status("www").State, w.status("www").LastError)
	if err := w.env.StopLibvirtd(); err != nil { // reaps it, forgets its pid
		t.Fatalf("reap libvirtd: %v", err)
	}
	if err := w.env.StartLibvirtd(t.Context()); err != nil {
		t.Fatalf("start libvirtd again: %v", err)
	}
	awaitStop(t, "www", stopped)
	st := w.waitState("www", 60*time.Second, "stopped", "ready")
	t.Logf("after libvirtd's restart www is %s, domain running %v", st.State, w.hasDomain("www"))
	w.serveEventually("www", 60*time.Second)
	checkInvariants(t, []*monitor{mon})
}

// TestFaultQEMUKilled: the QEMU process of a ready unikernel is killed
// while DNS keeps querying its name: the unikernel leaves ready within a
// few seconds, and a later query and GET boot it again.
func TestFaultQEMUKilled(t *testing.T) {
	w, mon, _ := startFaults(t, "www", unikernelConf{Name: "www", IP: "10.213.0.5"})
	boots := w.status("www").Boots

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { // the name keeps being asked for
		defer wg.Done()
		for ctx.Err() == nil {
			_, _, _ = w.query("www.example.test")
			time.Sleep(200 * time.Millisecond)
		}
	}()
	pid, err := testenv.QEMUPid("jitsu-www")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill QEMU (pid %d): %v", pid, err)
	}
	killed := time.Now()
	waitFor(t, 10*time.Second, "www to leave ready", func() bool { return w.status("www").State != "ready" })
	t.Logf("www left ready %v after its QEMU was killed (now %s)", time.Since(killed).Round(time.Millisecond), w.status("www").State)
	cancel()
	wg.Wait()

	w.serveEventually("www", 60*time.Second)
	if s := w.status("www"); s.Boots <= boots {
		t.Errorf("www counts %d boots after the kill, want more than %d", s.Boots, boots)
	}
	checkInvariants(t, []*monitor{mon})
}

// TestFaultLostStopEvent: the QEMU of a running unikernel dies while
// libvirtd is down, so no event ever tells jitsu. Once libvirtd is back,
// the reconciler marks it stopped and arms its address again; a client
// with the cached address then boots it through its held SYN.
func TestFaultLostStopEvent(t *testing.T) {
	w, mon, addr := startFaults(t, "www", unikernelConf{Name: "www", IP: "10.213.0.5"})
	pid, err := testenv.QEMUPid("jitsu-www")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.env.StopLibvirtd(); err != nil {
		t.Fatalf("stop libvirtd: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill QEMU (pid %d): %v", pid, err)
	}
	waitFor(t, 10*time.Second, "QEMU gone", func() bool { return syscall.Kill(pid, 0) != nil })
	if st := w.status("www").State; st != "ready" {
		t.Logf("www is %s before libvirtd is back (no event could tell)", st)
	}
	if err := w.env.StartLibvirtd(t.Context()); err != nil {
		t.Fatalf("start libvirtd: %v", err)
	}
	back := time.Now()
	w.waitState("www", 30*time.Second, "stopped")
	t.Logf("www marked stopped %v after libvirtd came back", time.Since(back).Round(time.Millisecond))
	waitFor(t, 10*time.Second, addr+" armed (held and pinned)", func() bool { return w.heldInTable(addr) && w.pinned(addr) })

	// The client does not query (the monitor queries only the static
	// name): the boot is triggered by its SYN.
	body, err := w.get(addr, 30*time.Second) // the cached address
	if err != nil || !strings.Contains(body, page) {
		t.Fatalf("GET the cached address after the lost stop: %v %q", netErr(err), body)
	}
	if s := w.status("www"); s.Boots != 2 || s.LastBoot == nil || s.LastBoot.Trigger != "tcp" {
		t.Errorf("%d boots, last %+v; want 2, the last triggered by tcp", s.Boots, s.LastBoot)
	}
	checkInvariants(t, []*monitor{mon})
}

// TestFaultReloadAddress: a reload moves a unikernel to a new address
// while it boots, and another while it runs. DNS answers the new address,
// a GET to it gets the page, and the old address is neither held in the
// nft table nor pinned.
func TestFaultReloadAddress(t *testing.T) {
	w, mon, _ := startFaults(t, "run",
		unikernelConf{Name: "boot", IP: "10.213.0.5"},
		unikernelConf{Name: "run", IP: "10.213.0.6"},
	)

	w.resolve("boot.example.test")
	if st := w.status("boot").State; st != "starting" {
		t.Logf("boot is %s, not starting, at the reload", st)
	}
	w.data.Unikernels = []unikernelConf{{Name: "boot", IP: "10.213.0.15"}, {Name: "run", IP: "10.213.0.16"}}
	w.writeConf()
	w.reload()

	for _, c := range []struct{ name, old, new string }{
		{"boot", "10.213.0.5", "10.213.0.15"},
		{"run", "10.213.0.6", "10.213.0.16"},
	} {
		waitFor(t, 10*time.Second, c.name+" answered at "+c.new, func() bool { return w.resolve(c.name+".example.test") == c.new })
		if addr := w.serveEventually(c.name, 60*time.Second); addr != c.new {
			t.Errorf("%s served at %s, want %s", c.name, addr, c.new)
		}
		waitFor(t, 10*time.Second, c.old+" released", func() bool { return !w.heldInTable(c.old) && !w.pinned(c.old) })
		if n := w.metric("jitsu_unikernel_stops_total", `unikernel="`+c.name+`"`); n < 1 {
			t.Errorf("%s: %v stops, want its old domain stopped by the reload", c.name, n)
		}
	}
	checkInvariants(t, []*monitor{mon})
}

// TestFaultTwoDaemons: two jitsu daemons with different configs (instance
// ids, DNS ports, control sockets, metrics addresses, unikernels) share
// one host and one libvirtd. Each boots its own unikernel; a restart of
// one adopts only its own domain and keeps the other's domain and nft
// table; stopping one leaves the other serving.
func TestFaultTwoDaemons(t *testing.T) {
	w1 := newWorld(t, true, unikernelConf{Name: "one", IP: "10.213.0.5"})
	w1.data.MaxRunning = 1
	w1.writeConf()
	w2 := &world{t: t, env: w1.env, dir: t.TempDir()}
	w2.socket = w2.dir + "/control.sock"
	w2.data = w1.data
	w2.data.Socket, w2.data.Metrics, w2.data.DNSListen = w2.socket, "127.0.0.1:9154", []string{"127.0.0.1:5354"}
	w2.data.Unikernels = []unikernelConf{{Name: "two", IP: "10.213.0.6"}}
	w2.writeConf()
	if w1.nftTable() == w2.nftTable() {
		t.Fatalf("both daemons have table %s", w1.nftTable())
	}
	first := w1.startJitsu()
	w2.startJitsu()
	mon2 := watch(w2)
	for _, c := range []struct {
		w    *world
		name string
	}{{w1, "one"}, {w2, "two"}} {
		if _, err := c.w.get(c.w.resolve(c.name+".example.test"), 30*time.Second); err != nil {
			t.Fatalf("GET %s: %v", c.name, netErr(err))
		}
	}
	if resp, _, err := w2.query("one.example.test"); err != nil || resp.Rcode != dns.RcodeNameError {
		t.Errorf("the second daemon answers for the first one's name: %v %v", err, resp)
	}
	id2 := w2.domID("jitsu-two")

	// The first daemon dies and comes back: it adopts its own domain and
	// leaves the second's alone. (Its own DNS is down meanwhile: it is
	// watched from its restart on.)
	first.kill(t)
	w1.startJitsu()
	mon1 := watch(w1)
	w1.waitState("one", 30*time.Second, "ready")
	time.Sleep(2 * time.Second) // let adoption and the first reconcile run
	if got := w1.domID("jitsu-two"); got != id2 {
		t.Errorf("jitsu-two has id %s after the first daemon's restart, was %s", got, id2)
	}
	if !tableExists(t, w1, w2.nftTable()) {
		t.Errorf("the second daemon's table %s is gone after the first daemon's restart", w2.nftTable())
	}
	body, err := w2.get("10.213.0.6", 10*time.Second)
	if err != nil || !strings.Contains(body, page) {
		t.Errorf("GET two after the first daemon's restart: %v %q", netErr(err), body)
	}
	checkInvariants(t, []*monitor{mon1, mon2})

	// The first daemon stops: the second keeps serving.
	mon2 = watch(w2)
	w1.last.stop(t)
	if !tableExists(t, w1, w2.nftTable()) {
		t.Errorf("the second daemon's table %s is gone after the first daemon stopped", w2.nftTable())
	}
	if got := w2.domID("jitsu-two"); got != id2 {
		t.Errorf("jitsu-two has id %s after the first daemon stopped, was %s", got, id2)
	}
	w2.serveEventually("two", 30*time.Second)
	if s := w2.status("two"); s.Boots != 1 || s.State != "ready" {
		t.Errorf("two: %s with %d boots, want ready with 1", s.State, s.Boots)
	}
	checkInvariants(t, []*monitor{mon2}, "jitsu-one")
}

// tableExists reports whether the nft table exists in w's namespace.
func tableExists(t *testing.T, w *world, table string) bool {
	t.Helper()
	out, err := w.env.Command(context.Background(), "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v\n%s", err, out)
	}
	return slices.Contains(strings.Fields(string(out)), table)
}

// TestFaultChatter: the example image with IPv6 on sends router
// solicitations and MLD reports on its own after boot; with idle_timeout
// 5s it is still stopped within idle_timeout + 2 s of its last client
// traffic.
func TestFaultChatter(t *testing.T) {
	w := newWorld(t, true, unikernelConf{Name: "six", IP: "10.213.0.5", IP6: "fd00:213::5", IdleTimeout: "5s"})
	w.data.Gateway6 = "fd00:213::1/64"
	w.data.MaxRunning = 1
	w.writeConf()
	if out, err := w.env.Command(t.Context(), "ip", "addr", "add", "fd00:213::1/64", "dev", w.env.Bridge, "nodad").CombinedOutput(); err != nil {
		t.Fatalf("add the IPv6 gateway: %v\n%s", err, out)
	}
	w.startJitsu()
	mon := watch(w)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chatter := sniffChatter(ctx, t, w)

	if _, err := w.get(w.resolve("six.example.test"), 30*time.Second); err != nil {
		t.Fatalf("GET six over IPv4: %v", netErr(err))
	}
	if body, err := w.get("[fd00:213::5]", 10*time.Second); err != nil || !strings.Contains(body, page) {
		t.Errorf("GET six over IPv6: %v %q (does /init configure jitsu.ip6=?)", netErr(err), body)
	}
	last := time.Now()
	st := w.waitState("six", 30*time.Second, "stopped")
	idle := time.Since(last)
	cancel()
	seen := <-chatter
	var after []string
	for _, p := range seen {
		if p.at.After(last) && p.at.Before(last.Add(idle)) {
			after = append(after, fmt.Sprintf("%s at +%v", p.kind, p.at.Sub(last).Round(10*time.Millisecond)))
		}
	}
	t.Logf("the guest sent %d chatter packets (RS, MLD, NS); after the last client traffic: %v", len(seen), after)
	t.Logf("six stopped %v after its last client traffic (state since %v)", idle.Round(10*time.Millisecond), st.Since.Sub(last).Round(10*time.Millisecond))
	if len(seen) == 0 {
		t.Error("the guest sent no router solicitation, MLD report or neighbour solicitation: is the image built with CONFIG_IPV6 (make image)?")
	}
	if idle > 7*time.Second {
		t.Errorf("six stopped %v after its last client traffic, want within idle_timeout + 2 s = 7 s", idle)
	}
	checkInvariants(t, []*monitor{mon})
}

// chatterPacket is one ICMPv6 packet the guest sent on its own.
type chatterPacket struct {
	at   time.Time
	kind string
}

// sniffChatter captures, on the bridge, the ICMPv6 router solicitations,
// MLD reports and neighbour solicitations not sent by the bridge itself,
// until ctx ends; it then sends what it saw.
func sniffChatter(ctx context.Context, t *testing.T, w *world) <-chan []chatterPacket {
	t.Helper()
	const ethPIPv6 = 0x86dd
	var fd int
	err := w.env.Do(func() error {
		var err error
		fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(ethPIPv6)))
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName(w.env.Bridge)
		if err != nil {
			return err
		}
		return syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(ethPIPv6), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", w.env.Bridge, err)
	}
	tv := syscall.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	out := make(chan []chatterPacket, 1)
	go func() {
		defer syscall.Close(fd)
		var seen []chatterPacket
		buf := make([]byte, 2048)
		for ctx.Err() == nil {
			n, _, err := syscall.Recvfrom(fd, buf, 0)
			if err != nil || n < 14+40+1 {
				continue
			}
			if net.HardwareAddr(buf[6:12]).String() == testenv.BridgeMAC {
				continue // the host's own
			}
			if kind := icmp6Kind(buf[14:n]); kind != "" {
				seen = append(seen, chatterPacket{time.Now(), kind})
			}
		}
		out <- seen
	}()
	return out
}

// icmp6Kind names an IPv6 packet that is an RS, MLD report or NS (after a
// hop-by-hop header, as MLD reports carry), or returns "".
func icmp6Kind(p []byte) string {
	next, off := p[6], 40
	if next == 0 && len(p) > off+2 { // hop-by-hop options
		next, off = p[off], off+8*(int(p[off+1])+1)
	}
	if next != 58 || len(p) <= off {
		return ""
	}
	switch p[off] {
	case 133:
		return "RS"
	case 143, 131:
		return "MLD"
	case 135:
		return "NS"
	}
	return ""
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
