package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/control"
	"github.com/jitsu-unikernel/jitsu/internal/testenv"
)

// jitsuBin is the jitsu binary built once by TestMain.
var jitsuBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jitsu-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	jitsuBin = filepath.Join(dir, "jitsu")
	out, err := exec.Command("go", "build", "-o", jitsuBin, "github.com/jitsu-unikernel/jitsu/cmd/jitsu").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build jitsu: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// unikernelConf is one [[unikernel]] of a test config.
type unikernelConf = testenv.JitsuUnikernel

// world is one test's environment: a namespace with libvirtd and the
// bridge, a config, and the jitsu daemons started in it.
type world struct {
	t      *testing.T
	env    *testenv.Env
	dir    string
	conf   string
	socket string
	data   testenv.JitsuConfig
	last   *daemon // the jitsu started last
}

// jitsuPid is the pid of the jitsu started last.
func (w *world) jitsuPid() int { return w.last.cmd.Process.Pid }

// newWorld starts libvirtd in a fresh namespace and writes a config with
// the given unikernels, all booting the example image unless they name
// their own kernel.
func newWorld(t *testing.T, synproxy bool, uks ...unikernelConf) *world {
	t.Helper()
	return newWorldWith(t, testenv.Options{}, synproxy, uks...)
}

// newWorldWith is newWorld with environment options (a client namespace).
func newWorldWith(t *testing.T, o testenv.Options, synproxy bool, uks ...unikernelConf) *world {
	t.Helper()
	env := testenv.LibvirtWith(t, o)
	img := testenv.ExampleImage(t)
	// QEMU runs as libvirt-qemu: the console dir must be traversable.
	consoleDir, err := os.MkdirTemp("/var/lib/jitsu", "e2e-console-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(consoleDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(consoleDir, "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				if len(b) > 4096 {
					b = b[len(b)-4096:]
				}
				t.Logf("console %s (tail):\n%s", filepath.Base(l), b)
			}
		}
		os.RemoveAll(consoleDir)
	})
	dir := t.TempDir()
	w := &world{t: t, env: env, dir: dir, socket: filepath.Join(dir, "control.sock")}
	w.data = testenv.JitsuConfig{
		SynProxy:   synproxy,
		ConsoleDir: consoleDir,
		Socket:     w.socket,
		Metrics:    "127.0.0.1:9153",
		Image:      img,
		Unikernels: uks,
	}
	w.writeConf()
	return w
}

// writeConf (re)writes the config file from w.data.
func (w *world) writeConf() {
	w.t.Helper()
	w.conf = filepath.Join(w.dir, "jitsu.toml")
	if err := w.data.Write(w.conf); err != nil {
		w.t.Fatal(err)
	}
}

// daemon is one jitsu serve process.
type daemon struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *logBuf
}

// logBuf collects the daemon's log lines.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// startJitsu runs jitsu serve inside the namespace and waits until its
// control socket answers. It is stopped with SIGTERM at the end of the test
// unless the test kills it first.
func (w *world) startJitsu() *daemon {
	w.t.Helper()
	d := w.spawnJitsu()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := control.Dial(ctx, w.socket)
		if err == nil {
			_, err = c.Status(ctx)
			c.Close()
			if err == nil {
				return d
			}
		}
		select {
		case <-d.done:
			w.t.Fatalf("jitsu exited at start-up: %v\n%s", d.err, d.log)
		default:
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("jitsu did not answer on %s: %v\n%s", w.socket, err, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// spawnJitsu starts jitsu serve inside the namespace without waiting for it.
func (w *world) spawnJitsu() *daemon {
	w.t.Helper()
	ctx := context.Background()
	cmd := w.env.Command(ctx, jitsuBin, "serve", "--config", w.conf, "--log-json", "--log-level", "debug")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		w.t.Fatalf("start jitsu: %v", err)
	}
	d := &daemon{cmd: cmd, done: make(chan struct{}), log: &logBuf{}}
	w.last = d
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			d.log.add(sc.Text())
		}
		d.err = cmd.Wait()
		close(d.done)
	}()
	w.t.Cleanup(func() {
		d.stop(w.t)
		if w.t.Failed() || os.Getenv("JITSU_TEST_LOG") == "1" {
			w.t.Logf("jitsu log:\n%s", d.log)
		}
	})
	return d
}

// stop sends SIGTERM and waits; it is a no-op once the process has exited.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	select {
	case <-d.done:
		return
	default:
	}
	start := time.Now()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		t.Logf("jitsu stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
		if d.err != nil {
			t.Errorf("jitsu exited uncleanly after SIGTERM: %v", d.err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("jitsu did not stop within 10s of SIGTERM")
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// kill sends SIGKILL and waits for the process to be gone. The `ip netns
// exec` wrapper execs jitsu, so the pid is jitsu's.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Kill()
	<-d.done
}

// query asks jitsu for name's A record from inside the namespace.
func (w *world) query(name string) (*dns.Msg, time.Duration, error) {
	var resp *dns.Msg
	var rtt time.Duration
	err := w.env.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		c := &dns.Client{Timeout: 5 * time.Second}
		var err error
		resp, rtt, err = c.Exchange(m, w.dnsAddr())
		return err
	})
	return resp, rtt, err
}

// dnsAddr is the address jitsu's DNS server listens on.
func (w *world) dnsAddr() string {
	if len(w.data.DNSListen) > 0 {
		return w.data.DNSListen[0]
	}
	return "127.0.0.1:5353"
}

// resolve queries name and returns its single A address.
func (w *world) resolve(name string) string {
	w.t.Helper()
	resp, _, err := w.query(name)
	if err != nil {
		w.t.Fatalf("query %s: %v", name, err)
	}
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		w.t.Fatalf("query %s: rcode %s, answer %v", name, dns.RcodeToString[resp.Rcode], resp.Answer)
	}
	a, ok := resp.Answer[0].(*dns.A)
	if !ok {
		w.t.Fatalf("query %s: answer %v is not an A record", name, resp.Answer[0])
	}
	return a.A.String()
}

// get fetches http://addr/ from inside the namespace with a client that
// gives up after timeout.
func (w *world) get(addr string, timeout time.Duration) (string, error) {
	return fetch(context.Background(), w.env.HTTPClient(), addr, timeout)
}

// fetch GETs http://addr/ with client, giving up after timeout or when ctx
// ends.
func fetch(ctx context.Context, client *http.Client, addr string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", addr, resp.Status)
	}
	return string(body), nil
}

// status returns the named unikernel's status from the control socket.
func (w *world) status(name string) control.UnikernelStatus {
	w.t.Helper()
	sts := w.statuses()
	for _, s := range sts {
		if s.Name == name {
			return s
		}
	}
	w.t.Fatalf("status: no unikernel %q in %v", name, sts)
	return control.UnikernelStatus{}
}

// statuses returns every unikernel's status from the control socket.
func (w *world) statuses() []control.UnikernelStatus {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := control.Dial(ctx, w.socket)
	if err != nil {
		w.t.Fatalf("dial control socket: %v", err)
	}
	defer c.Close()
	sts, err := c.Status(ctx)
	if err != nil {
		w.t.Fatalf("status: %v", err)
	}
	return sts
}

// waitState polls the control socket until name is in one of states.
func (w *world) waitState(name string, timeout time.Duration, states ...string) control.UnikernelStatus {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := w.status(name)
		for _, st := range states {
			if s.State == st {
				return s
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: state %q after %v, want one of %v (last error %q)", name, s.State, timeout, states, s.LastError)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric scrapes jitsu's metrics from inside the namespace and returns the
// sum of the samples of family name whose labels contain every label pair.
func (w *world) metric(name string, labels ...string) float64 {
	w.t.Helper()
	sum, found := w.metricOK(name, labels...)
	if !found {
		w.t.Fatalf("metric %s%v not found", name, labels)
	}
	return sum
}

// metricOK is metric that reports whether any sample matched instead of
// failing (a labelled counter has no sample before its first increment).
func (w *world) metricOK(name string, labels ...string) (float64, bool) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.data.Metrics+"/metrics", nil)
	resp, err := w.env.HTTPClient().Do(req)
	if err != nil {
		w.t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			w.t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
		found = true
	}
	return sum, found
}

// metricOr0 is metric, 0 when no sample matches yet (a labelled counter
// appears on its first increment).
func (w *world) metricOr0(name string, labels ...string) float64 {
	w.t.Helper()
	sum, _ := w.metricOK(name, labels...)
	return sum
}

// domains lists the running domains in the namespace's libvirtd.
func (w *world) domains() []string {
	w.t.Helper()
	out, err := exec.Command("virsh", "-c", w.env.URI, "list", "--name").Output()
	if err != nil {
		w.t.Fatalf("virsh list: %v", err)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			names = append(names, l)
		}
	}
	return names
}

// domID returns a running domain's libvirt id, which changes at each boot.
func (w *world) domID(name string) string {
	w.t.Helper()
	out, err := exec.Command("virsh", "-c", w.env.URI, "domid", name).Output()
	if err != nil {
		w.t.Fatalf("virsh domid %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// isRefused reports whether err is a refused connection (the peer, or the
// SYN proxy on its behalf, answered RST).
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// netErr unwraps err to a net.Error for messages.
func netErr(err error) string {
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Sprintf("%v (timeout=%v)", ne, ne.Timeout())
	}
	return fmt.Sprint(err)
}

// waitFor polls cond every 50 ms until it holds, failing t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// heldInTable reports whether ip is in the nft set of held IPv4 addresses
// of the world's jitsu (false when the table does not exist).
func (w *world) heldInTable(ip string) bool {
	w.t.Helper()
	out, err := w.env.Command(context.Background(), "nft", "list", "set", "inet", w.nftTable(), "held4").CombinedOutput()
	if err != nil {
		return false
	}
	return regexp.MustCompile(`\b` + regexp.QuoteMeta(ip) + `\b`).Match(out)
}

// nftTable is the nftables table of the jitsu serving w.conf.
func (w *world) nftTable() string {
	return config.DaemonConfig{ID: config.DefaultID(w.conf)}.NFTTable()
}

// pinned reports whether ip has a permanent neighbour entry on the bridge.
func (w *world) pinned(ip string) bool {
	w.t.Helper()
	out, err := w.env.Command(context.Background(), "ip", "neigh", "show", ip, "dev", w.env.Bridge, "nud", "permanent").CombinedOutput()
	if err != nil {
		w.t.Fatalf("ip neigh show: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out)) != ""
}
