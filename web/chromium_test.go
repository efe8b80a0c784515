package web

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// chromium finds the headless browser, or skips (fails under CI=true).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found but CI=true: apt-get install chromium chromium-driver")
	}
	t.Skip("chromium not found (apt-get install chromium); the status page is not tested in a browser")
	return ""
}

// renderDOM loads url in headless Chromium, lets the page's scripts run for
// budget of virtual time, and returns the serialized DOM.
func renderDOM(t *testing.T, browser, url string, budget time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--no-first-run", "--no-default-browser-check",
		"--user-data-dir="+t.TempDir(),
		"--virtual-time-budget="+strconv.FormatInt(budget.Milliseconds(), 10),
		"--dump-dom", url)
	// Chromium forks helpers: run it in its own process group and kill the
	// whole group when done, so nothing outlives the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		t.Fatalf("chromium: %v\nstderr:\n%s", err, errb.String())
	}
	return out.String()
}

// TestPageInChromium opens the status page in headless Chromium against a
// fake daemon and checks the rendered DOM shows the unikernels and the boot
// on the timeline, with its three phases as bars.
func TestPageInChromium(t *testing.T) {
	browser := chromium(t)
	t0 := time.Now().Add(-3 * time.Second)
	srv := httptest.NewServer(New(Options{Daemon: &fakeDaemon{status: sampleStatus(t0)}}))
	defer srv.Close()

	dom := renderDOM(t, browser, srv.URL+"/", 3*time.Second)

	checks := []struct {
		what string
		re   string
	}{
		{"the table row of www-demo", `<tr data-name="www-demo"><td>www-demo</td><td><span class="state ready">ready</span></td><td>10\.77\.0\.2</td>`},
		{"the table row of blog", `<tr data-name="blog"><td>blog</td><td><span class="state stopped">stopped</span>`},
		{"blog's last error", `last error: boot timed out after 30s`},
		{"the boot of www-demo on the timeline", `<div class="boot" data-unikernel="www-demo">`},
		{"the query → start bar", `<div class="bar dns" title="query → start: 20 ms" style="left: 0%; width: [0-9.]+%;">`},
		{"the start → ready bar", `<div class="bar boot" title="start → ready: 1.1 s" style="left: [0-9.]+%; width: [0-9.]+%;">`},
		{"the ready → first replay bar", `<div class="bar hold" title="ready → first replayed SYN: 2 ms" style="left: [0-9.]+%; width: [0-9.]+%;">`},
		{"the boot's total", `<div class="total">1.2 s</div>`},
		{"the live indicator", `<span id="conn" class="conn">live · `},
	}
	for _, c := range checks {
		if !regexp.MustCompile(c.re).MatchString(dom) {
			t.Errorf("rendered page lacks %s (%s)", c.what, c.re)
		}
	}
	if regexp.MustCompile(`data-unikernel="blog"`).MatchString(dom) {
		t.Error("blog never booted but appears on the timeline")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}
