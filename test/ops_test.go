package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/control"
	"github.com/jitsu-unikernel/jitsu/internal/testenv"
)

// TestReloadUnderLoad: while clients query without pause, reloads add a
// unikernel, remove one, and are refused for an invalid file; no query is
// lost or fails, and every change takes effect.
func TestReloadUnderLoad(t *testing.T) {
	w := newWorld(t, true,
		unikernelConf{Name: "www", IP: "10.213.0.5"},
		unikernelConf{Name: "old", IP: "10.213.0.6"},
	)
	w.startJitsu()
	if _, err := w.get(w.resolve("old.example.test"), 30*time.Second); err != nil {
		t.Fatalf("GET old: %v", netErr(err))
	}

	// Load: 4 clients querying a static name and a unikernel name.
	ctx, stop := context.WithCancel(context.Background())
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait() // also when a check below fails the test
	defer stop()
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.env.Do(func() error {
				c := &dns.Client{Timeout: 2 * time.Second}
				conn, err := c.Dial("127.0.0.1:5353")
				if err != nil {
					failed.Add(1)
					return err
				}
				defer conn.Close()
				for n := 0; ctx.Err() == nil && n < 200000; n++ {
					m := new(dns.Msg)
					m.SetQuestion([]string{"static.example.test.", "www.example.test."}[n%2], dns.TypeA)
					sent.Add(1)
					resp, _, err := c.ExchangeWithConn(m, conn)
					if err != nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
						failed.Add(1)
					}
				}
				return nil
			})
		}()
	}

	// And dnsperf, the load generator of the DNS benchmarks, at a steady
	// rate for the whole reload sequence.
	dnsperf, err := exec.LookPath("dnsperf")
	if err != nil {
		if testenv.InCI() {
			t.Fatal("dnsperf not found but CI=true: apt-get install dnsperf")
		}
		t.Skip("dnsperf not found (apt-get install dnsperf)")
	}
	qfile := filepath.Join(w.dir, "queries")
	if err := os.WriteFile(qfile, []byte("static.example.test A\nwww.example.test A\nns1.example.test A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	perf := w.env.Command(context.Background(), dnsperf, "-s", "127.0.0.1", "-p", "5353", "-d", qfile,
		"-l", "4", "-c", "2", "-Q", "5000", "-t", "2")
	var perfOut bytes.Buffer
	perf.Stdout, perf.Stderr = &perfOut, &perfOut
	if err := perf.Start(); err != nil {
		t.Fatalf("start dnsperf: %v", err)
	}
	time.Sleep(500 * time.Millisecond)

	reload := func() error {
		c, err := control.Dial(context.Background(), w.socket)
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Reload(context.Background())
	}
	// Every reload below bumps the zone's SOA serial, and waits until DNS
	// answers with it before the next one: each reload took effect.
	// 1. Add "new", remove "old".
	w.data.Unikernels = []unikernelConf{{Name: "www", IP: "10.213.0.5"}, {Name: "new", IP: "10.213.0.7"}}
	w.data.Serial = 2
	w.writeConf()
	if err := reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	w.waitSerial(2)
	if resp, _, err := w.query("old.example.test"); err != nil || resp.Rcode != dns.RcodeNameError {
		t.Errorf("query old right after the reload: %v %v, want NXDOMAIN", err, resp)
	}
	// 2. An invalid file is refused with its errors; the old config stays.
	w.data.Serial = 3
	w.writeConf()
	good, _ := os.ReadFile(w.conf)
	if err := os.WriteFile(w.conf, append(bytes.Clone(good), []byte("\n[dns]\nbogus = 1\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	err = reload()
	if err == nil || !strings.Contains(err.Error(), "jitsu.toml:") {
		t.Errorf("reload of an invalid file: %v, want the file's errors", err)
	}
	if got := w.serial(); got != 2 {
		t.Errorf("SOA serial %d after a refused reload, want still 2", got)
	}
	// 3. SIGHUP reloads as well, several times under load.
	for i := 0; i < 5; i++ {
		w.data.Serial = uint32(10 + i)
		w.writeConf()
		if err := syscall.Kill(w.jitsuPid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		w.waitSerial(w.data.Serial)
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()
	if err := perf.Wait(); err != nil {
		t.Fatalf("dnsperf: %v\n%s", err, perfOut.String())
	}
	perfSent, perfLost := dnsperfCount(perfOut.String(), "Queries sent:"), dnsperfCount(perfOut.String(), "Queries lost:")
	t.Logf("dnsperf during the reloads: %d queries sent, %d lost", perfSent, perfLost)
	if perfSent < 1000 || perfLost != 0 {
		t.Errorf("dnsperf: %d sent, %d lost; want > 1000 sent and none lost\n%s", perfSent, perfLost, perfOut.String())
	}
	t.Logf("%d queries during the reloads, %d failed", sent.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d of %d queries failed during the reloads", failed.Load(), sent.Load())
	}
	if sent.Load() < 100 {
		t.Errorf("only %d queries sent: the load did not run", sent.Load())
	}

	// The changes took effect: "new" boots, "old" is gone and stopped.
	body, err := w.get(w.resolve("new.example.test"), 30*time.Second)
	if err != nil || !strings.Contains(body, page) {
		t.Fatalf("GET new after reload: %v %q", err, body)
	}
	resp, _, err := w.query("old.example.test")
	if err != nil || resp.Rcode != dns.RcodeNameError {
		t.Errorf("query old after reload: %v %v, want NXDOMAIN", err, resp)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		gone := true
		for _, d := range w.domains() {
			if d == "jitsu-old" {
				gone = false
			}
		}
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("jitsu-old still running after it was removed from the config")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dnsperfCount returns the number after label in dnsperf's report, or -1.
func dnsperfCount(out, label string) int {
	i := strings.Index(out, label)
	if i < 0 {
		return -1
	}
	f := strings.Fields(out[i+len(label):])
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return -1
	}
	return n
}

// TestCLIAndStatusPage: the jitsu CLI drives a running daemon (status,
// stop, start, an unknown name), and the status page shows a boot when
// opened in headless Chromium.
func TestCLIAndStatusPage(t *testing.T) {
	w := newWorld(t, true, unikernelConf{Name: "www", IP: "10.213.0.5"})
	w.startJitsu()
	cli := func(args ...string) (string, error) {
		out, err := exec.Command(jitsuBin, append(args, "--socket", w.socket)...).CombinedOutput()
		return string(out), err
	}
	if _, err := cli("start", "www"); err != nil {
		t.Fatalf("jitsu start www: %v", err)
	}
	w.waitState("www", 30*time.Second, "ready")
	out, err := cli("status")
	if err != nil || !regexp.MustCompile(`(?m)^www\s+ready\s+10\.213\.0\.5`).MatchString(out) {
		t.Errorf("jitsu status: %v\n%s", err, out)
	}
	out, err = cli("stop", "nosuch")
	if err == nil || !strings.Contains(out, "unknown") {
		t.Errorf("jitsu stop nosuch: %v %q, want an unknown-name error", err, out)
	}

	// The status page, rendered by a real browser inside the namespace.
	browser, err := exec.LookPath("chromium")
	if err != nil {
		if testenv.InCI() {
			t.Fatal("chromium not found but CI=true: apt-get install chromium")
		}
		t.Skip("chromium not found (apt-get install chromium): status page not checked")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := w.env.Command(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-first-run", "--user-data-dir="+t.TempDir(), "--virtual-time-budget=3000",
		"--dump-dom", "http://"+w.data.Metrics+"/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	dom, err := cmd.Output()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	for _, re := range []string{
		`<tr data-name="www"><td>www</td><td><span class="state ready">ready</span>`,
		`<div class="boot" data-unikernel="www">`,
		`class="bar boot" title="start → ready: `,
	} {
		if !regexp.MustCompile(re).Match(dom) {
			t.Errorf("status page lacks %s\n%s", re, dom)
		}
	}

	if _, err := cli("stop", "www"); err != nil {
		t.Errorf("jitsu stop www: %v", err)
	}
	w.waitState("www", 30*time.Second, "stopped")
}

// serial returns the SOA serial jitsu answers for example.test.
func (w *world) serial() uint32 {
	w.t.Helper()
	var resp *dns.Msg
	err := w.env.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion("example.test.", dns.TypeSOA)
		var err error
		resp, _, err = (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, "127.0.0.1:5353")
		return err
	})
	if err != nil {
		w.t.Fatalf("query SOA: %v", err)
	}
	for _, rr := range resp.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial
		}
	}
	w.t.Fatalf("no SOA in %v", resp)
	return 0
}

// waitSerial waits until jitsu answers with SOA serial want.
func (w *world) waitSerial(want uint32) {
	w.t.Helper()
	waitFor(w.t, 10*time.Second, fmt.Sprintf("SOA serial %d", want), func() bool { return w.serial() == want })
}
