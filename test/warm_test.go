package test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/config"
)

// TestWarmPool (issue 16): a warm = true unikernel is prepared when jitsu
// starts (state warm, a paused domain in `virsh list --all`); a query and
// a GET get its page, and its boot timeline and log say the start came
// from the warm pool. A cold unikernel in the same test boots, for
// comparison: both query→first byte times are logged (no timed
// assertion), with the RSS of the paused and of the running QEMU.
func TestWarmPool(t *testing.T) {
	w := newWorld(t, true,
		unikernelConf{Name: "warm", IP: "10.213.0.5", Warm: true},
		unikernelConf{Name: "cold", IP: "10.213.0.6"})
	w.startJitsu()

	w.waitState("warm", 60*time.Second, "warm")
	dom := config.DomainPrefix + "warm"
	if st := w.domState(dom); st != "paused" {
		t.Fatalf("virsh domstate %s = %q, want paused", dom, st)
	}
	if !strings.Contains(w.virsh("list", "--all"), dom) {
		t.Errorf("virsh list --all does not list %s", dom)
	}
	if w.metric("jitsu_unikernel_state", `unikernel="warm"`, `state="warm"`) != 1 {
		t.Errorf("jitsu_unikernel_state{unikernel=warm,state=warm} is not 1")
	}
	pausedRSS := qemuRSS(t, dom)

	warmTTFB := w.queryAndGet("warm")
	s := w.status("warm")
	if s.LastBoot == nil || s.LastBoot.Mode != "warm" || s.LastBoot.Trigger != "dns" {
		t.Errorf("warm's boot timeline %+v: want mode warm, trigger dns", s.LastBoot)
	}
	if !w.logged(`"msg":"booting unikernel"`, `"unikernel":"warm"`, `"mode":"warm"`) {
		t.Errorf("no log line says warm started from the warm pool:\n%s", w.last.log)
	}
	runningRSS := qemuRSS(t, dom)

	coldTTFB := w.queryAndGet("cold")
	if s := w.status("cold"); s.LastBoot == nil || s.LastBoot.Mode != "boot" {
		t.Errorf("cold's boot timeline %+v: want mode boot", s.LastBoot)
	}
	t.Logf("query → first byte: warm pool %v, cold boot %v (%.2fx)", warmTTFB.Round(time.Millisecond),
		coldTTFB.Round(time.Millisecond), float64(warmTTFB)/float64(coldTTFB))
	t.Logf("QEMU RSS of %s: paused before its guest ran %d KiB, running and serving %d KiB", dom, pausedRSS, runningRSS)
}

// queryAndGet resolves NAME.example.test and fetches its page, returning
// the time from the query to the first byte of the response.
func (w *world) queryAndGet(name string) time.Duration {
	w.t.Helper()
	start := time.Now()
	addr := w.resolve(name + ".example.test")
	var first time.Time
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		w.t.Fatal(err)
	}
	resp, err := w.env.HTTPClient().Do(req)
	if err != nil {
		w.t.Fatalf("GET %s (%s): %v", name, addr, netErr(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), page) {
		w.t.Fatalf("GET %s: %s, %v, page %q", name, resp.Status, err, body)
	}
	return first.Sub(start)
}

// virsh runs virsh against the namespace's libvirtd and returns its output.
func (w *world) virsh(args ...string) string {
	w.t.Helper()
	out, err := exec.Command("virsh", append([]string{"-c", w.env.URI}, args...)...).CombinedOutput()
	if err != nil {
		w.t.Fatalf("virsh %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// domState returns `virsh domstate` of dom.
func (w *world) domState(dom string) string {
	return strings.TrimSpace(w.virsh("domstate", dom))
}

// logged reports whether a line of the last daemon's log contains every
// part.
func (w *world) logged(parts ...string) bool {
	for _, l := range strings.Split(w.last.log.String(), "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// qemuRSS returns the resident set size in KiB of the QEMU process of
// domain dom (found by its -name guest=dom argument).
func qemuRSS(t *testing.T, dom string) int {
	t.Helper()
	out, err := exec.Command("ps", "-eo", "rss=,args=").Output()
	if err != nil {
		t.Fatalf("ps: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || !strings.Contains(l, "guest="+dom+",") && !strings.Contains(l, "guest="+dom+" ") {
			continue
		}
		if !strings.Contains(f[1], "qemu") {
			continue
		}
		kib, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("ps rss %q: %v", f[0], err)
		}
		return kib
	}
	t.Fatalf("no QEMU process for %s in ps", dom)
	return 0
}
