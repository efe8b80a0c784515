package test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/config"
)

// TestSnapshotStart (issue 16): a start = "snapshot" unikernel's first
// summon boots it and saves it to its file (the file exists, the log
// gives the save and restore times); once it idled out, a second summon
// restores the file (mode snapshot) and serves the page. A reload that
// changes its spec discards the file, and the next start boots. After
// each restore the guest's clock is within 1 s of the host's (set through
// its guest agent), and two restores give different random bytes (the
// guest re-seeds its RNG): read from the example's /.jitsu/now.
// Query → first byte of the boot and of the restore are logged (no timed
// assertion).
func TestSnapshotStart(t *testing.T) {
	snapDir, err := os.MkdirTemp("/var/lib/jitsu", "e2e-snapshot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(snapDir) })
	w := newWorld(t, true, unikernelConf{Name: "snap", IP: "10.213.0.7", Start: "snapshot", IdleTimeout: "4s"})
	w.data.SnapshotDir = snapDir
	w.writeConf()
	w.startJitsu()
	dom := config.DomainPrefix + "snap"
	files := func() []string {
		m, err := filepath.Glob(filepath.Join(snapDir, "*", dom+"-*.save"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	bootTTFB := w.queryAndGet("snap")
	if s := w.status("snap"); s.LastBoot == nil || s.LastBoot.Mode != "boot" {
		t.Errorf("first start's timeline %+v: want mode boot", s.LastBoot)
	}
	made := files()
	if len(made) != 1 {
		t.Fatalf("save files after the first start: %q, want one", made)
	}
	fi, err := os.Stat(made[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("save file %s: %d bytes; %s", filepath.Base(made[0]), fi.Size(), logLine(w, "snapshot saved and restored"))

	randoms := map[string]int{}
	for i := 1; i <= 2; i++ {
		w.waitState("snap", 60*time.Second, "stopped")
		if w.hasDomain("snap") {
			t.Fatalf("domain %s still exists after idle-out", dom)
		}
		ttfb := w.queryAndGet("snap")
		s := w.status("snap")
		if s.LastBoot == nil || s.LastBoot.Mode != "snapshot" {
			t.Errorf("restore %d: timeline %+v, want mode snapshot", i, s.LastBoot)
		}
		t.Logf("query → first byte: boot (with save and restore) %v, restore %d %v; %s", bootTTFB.Round(time.Millisecond), i,
			ttfb.Round(time.Millisecond), logLine(w, "restored from snapshot"))
		// The restored guest's clock is the host's (set through its
		// agent), and its RNG is not the one of the save.
		w.checkRestored("snap", "restore", i, randoms)
	}
	if got := files(); len(got) != 1 || got[0] != made[0] {
		t.Errorf("save files after restores %q, want %q kept", got, made)
	}
	t.Logf("guest clock set failures: %v", w.metricOr0("jitsu_unikernel_guest_time_failures_total", `unikernel="snap"`))

	// A spec change discards the file; the next start boots and saves anew.
	w.data.Unikernels[0].Extra = `memory = "80MiB"`
	w.writeConf()
	w.reload()
	if got := files(); len(got) != 0 {
		t.Errorf("save files after a spec change %q, want none", got)
	}
	w.waitState("snap", 60*time.Second, "stopped")
	w.queryAndGet("snap")
	if s := w.status("snap"); s.LastBoot == nil || s.LastBoot.Mode != "boot" {
		t.Errorf("start after a spec change: timeline %+v, want mode boot", s.LastBoot)
	}
	if got := files(); len(got) != 1 || got[0] == made[0] {
		t.Errorf("save files after the new start %q, want one new one", got)
	}
}

// guestNowReply is the example guest's /.jitsu/now answer.
type guestNowReply struct {
	UnixNano  int64  `json:"unix_nano"`
	Random    string `json:"random"`
	ClockSets int64  `json:"clock_sets"`
}

// guestNow GETs the example guest's /.jitsu/now at addr and returns it
// with the guest clock's offset from the host's (at the middle of the
// request); false (the test marked failed) if it could not.
func (w *world) guestNow(addr string) (guestNowReply, time.Duration, bool) {
	w.t.Helper()
	var r guestNowReply
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/.jitsu/now", nil)
	if err != nil {
		w.t.Fatal(err)
	}
	t0 := time.Now()
	resp, err := w.env.HTTPClient().Do(req)
	if err != nil {
		w.t.Errorf("GET /.jitsu/now: %v", err)
		return r, 0, false
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&r)
	t1 := time.Now()
	if resp.StatusCode != http.StatusOK || err != nil {
		w.t.Errorf("GET /.jitsu/now: %s, %v (an image without the guest agent? make image)", resp.Status, err)
		return r, 0, false
	}
	mid := t0.Add(t1.Sub(t0) / 2)
	return r, time.Unix(0, r.UnixNano).Sub(mid), true
}

// logLine returns the last line of w's jitsu log with msg, for the test
// log ("" if none).
func logLine(w *world, msg string) string {
	re := regexp.MustCompile(`.*"msg":"` + regexp.QuoteMeta(msg) + `".*`)
	m := re.FindAllString(w.last.log.String(), -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1]
}

// TestWarmSnapshotStart (issue 16): warm = true with start = "snapshot".
// Before its first boot made the save file the unikernel has no warm
// domain; after each idle-out its warm domain is the file restored paused
// (virsh: paused), and a query and a GET resume it (mode warm-snapshot).
// After each resume the guest's clock is within 1 s of the host's and
// two resumes of the same file give different random bytes. Query →
// first byte and the paused QEMU's RSS are logged (no timed assertion).
func TestWarmSnapshotStart(t *testing.T) {
	snapDir, err := os.MkdirTemp("/var/lib/jitsu", "e2e-warmsnap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(snapDir) })
	w := newWorld(t, true, unikernelConf{Name: "wsnap", IP: "10.213.0.8", Start: "snapshot", Warm: true, IdleTimeout: "4s"})
	w.data.SnapshotDir = snapDir
	w.writeConf()
	w.startJitsu()
	dom := config.DomainPrefix + "wsnap"
	if s := w.status("wsnap"); s.State != "stopped" || w.hasDomain("wsnap") {
		t.Fatalf("before its first boot: state %s, domain exists %v; want stopped and no domain", s.State, w.hasDomain("wsnap"))
	}
	bootTTFB := w.queryAndGet("wsnap")
	if s := w.status("wsnap"); s.LastBoot == nil || s.LastBoot.Mode != "boot" {
		t.Errorf("first start's timeline %+v: want mode boot", s.LastBoot)
	}
	randoms := map[string]int{}
	for i := 1; i <= 2; i++ {
		w.waitState("wsnap", 60*time.Second, "warm")
		if st := w.domState(dom); st != "paused" {
			t.Fatalf("resume %d: virsh domstate %s = %q, want paused", i, dom, st)
		}
		rss := qemuRSS(t, dom)
		ttfb := w.queryAndGet("wsnap")
		if s := w.status("wsnap"); s.LastBoot == nil || s.LastBoot.Mode != "warm-snapshot" {
			t.Errorf("resume %d: timeline %+v, want mode warm-snapshot", i, s.LastBoot)
		}
		t.Logf("query → first byte: boot (with save and restore) %v, warm snapshot %d %v; paused QEMU RSS %d KiB; %s",
			bootTTFB.Round(time.Millisecond), i, ttfb.Round(time.Millisecond), rss, logLine(w, "warm domain prepared"))
		w.checkRestored("wsnap", "resume", i, randoms)
	}
}

// checkRestored reads name's /.jitsu/now after its i-th restore or resume
// (what): the guest's clock must be within 1 s of the host's and set by
// the agent, and its random bytes must differ from those of every earlier
// one (randoms, updated).
func (w *world) checkRestored(name, what string, i int, randoms map[string]int) {
	w.t.Helper()
	now, skew, ok := w.guestNow(w.resolve(name + ".example.test"))
	if !ok {
		return
	}
	if skew > time.Second || skew < -time.Second || now.ClockSets < 1 {
		w.t.Errorf("%s %d: guest clock %v off the host's (clock sets %d), want within 1 s", what, i, skew, now.ClockSets)
	}
	if j, dup := randoms[now.Random]; dup {
		w.t.Errorf("%s %d and %d gave the same random bytes %s", what, j, i, now.Random)
	}
	randoms[now.Random] = i
	w.t.Logf("%s %d: guest clock off by %v, random %s", what, i, skew.Round(time.Microsecond), now.Random)
}
