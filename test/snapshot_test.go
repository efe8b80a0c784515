package test

import (
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
// changes its spec discards the file, and the next start boots.
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
