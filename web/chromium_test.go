package web

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/control"
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
// budget of virtual time, and returns the serialized DOM. flags are added
// to Chromium's (e.g. --window-size).
func renderDOM(t *testing.T, browser, url string, budget time.Duration, flags ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--no-first-run", "--no-default-browser-check",
		"--user-data-dir=" + t.TempDir(),
		"--virtual-time-budget=" + strconv.FormatInt(budget.Milliseconds(), 10),
	}, flags...)
	cmd := exec.CommandContext(ctx, browser, append(args, "--dump-dom", url)...)
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

// layoutProbe is served beside the status page to TestLayoutInChromium
// and loaded by it: once the timeline is drawn, it measures the page and
// writes the figures into body's data-layout attribute, which --dump-dom
// serializes.
const layoutProbe = `
const lines = (e) => {
  const tops = new Set();
  const w = document.createTreeWalker(e, NodeFilter.SHOW_TEXT);
  for (let n = w.nextNode(); n; n = w.nextNode()) {
    if (!n.data.trim()) continue;
    const r = document.createRange();
    r.selectNodeContents(n);
    for (const x of r.getClientRects()) tops.add(Math.round(x.top));
  }
  return tops.size;
};
const wait = setInterval(() => {
  const ticks = [...document.querySelectorAll(".scale span")];
  const track = document.querySelector("#timeline > .boot .track");
  if (ticks.length === 0 || !track) return;
  clearInterval(wait);
  const items = [...document.querySelectorAll(".legend .item")];
  const tr = track.getBoundingClientRect();
  document.body.dataset.layout = JSON.stringify({
    width: window.innerWidth,
    itemTops: items.map((e) => e.offsetTop),
    itemLines: items.map(lines),
    tickLines: ticks.map(lines),
    firstTick: ticks[0].getBoundingClientRect().left - tr.left,
    lastTick: ticks[ticks.length - 1].getBoundingClientRect().left - tr.right,
  });
}, 50);
`

// pageLayout is what layoutProbe measures.
type pageLayout struct {
	Width     int       `json:"width"`
	ItemTops  []float64 `json:"itemTops"`  // offsetTop of each legend item
	ItemLines []int     `json:"itemLines"` // lines of text in each legend item
	TickLines []int     `json:"tickLines"` // lines of text in each scale tick
	FirstTick float64   `json:"firstTick"` // px from the track's left edge to the first tick's line
	LastTick  float64   `json:"lastTick"`  // px from the track's right edge to the last tick's line
}

// TestLayoutInChromium: at 1200 px wide, the boot timeline's legend is one
// line (each item one line, all at the same offsetTop), no scale tick
// wraps ("40 ms" did), and the scale's first and last ticks sit on the
// ends of the bars' track. The probe is injected by the test server, not
// shipped.
func TestLayoutInChromium(t *testing.T) {
	browser := chromium(t)
	t0 := time.Now().Add(-3 * time.Second)
	status := append(sampleStatus(t0), control.UnikernelStatus{
		Name: "p-style-css", State: "ready", Addrs: []string{"10.77.0.3"}, Boots: 1,
		LastBoot: &control.BootTimeline{Query: t0, Trigger: "dns", Mode: "warm", Start: t0.Add(2 * time.Millisecond),
			Ready: t0.Add(33 * time.Millisecond), FirstReplay: t0.Add(34 * time.Millisecond)},
	})
	status[0].LastBoot = nil // a 34 ms span: ticks up to 40 ms
	page := New(Options{Daemon: &fakeDaemon{status: status}})
	mux := http.NewServeMux()
	mux.HandleFunc("/layout-probe.js", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		io.WriteString(w, layoutProbe)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			page.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		page.ServeHTTP(rec, r)
		w.Header().Set("Content-Type", rec.Header().Get("Content-Type"))
		io.WriteString(w, strings.Replace(rec.Body.String(), "</body>", `<script src="layout-probe.js"></script></body>`, 1))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	dom := renderDOM(t, browser, srv.URL+"/", 3*time.Second, "--window-size=1200,800", "--hide-scrollbars")
	m := regexp.MustCompile(`data-layout="([^"]*)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("the layout probe wrote nothing; DOM:\n%s", dom)
	}
	var l pageLayout
	if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &l); err != nil {
		t.Fatalf("layout %q: %v", m[1], err)
	}
	t.Logf("layout at %d px: %+v", l.Width, l)
	if l.Width != 1200 {
		t.Fatalf("window %d px wide, want 1200", l.Width)
	}
	if len(l.ItemTops) != 6 {
		t.Fatalf("%d legend items, want 6", len(l.ItemTops))
	}
	for i := range l.ItemTops {
		if l.ItemTops[i] != l.ItemTops[0] || l.ItemLines[i] != 1 {
			t.Errorf("legend item %d: offsetTop %v (first %v), %d lines: the legend wraps", i, l.ItemTops[i], l.ItemTops[0], l.ItemLines[i])
		}
	}
	if len(l.TickLines) < 2 {
		t.Fatalf("%d scale ticks", len(l.TickLines))
	}
	for i, n := range l.TickLines {
		if n != 1 {
			t.Errorf("scale tick %d takes %d lines", i, n)
		}
	}
	if math.Abs(l.FirstTick) > 1 || math.Abs(l.LastTick) > 1 {
		t.Errorf("scale ticks %v px and %v px off the track's ends, want within 1", l.FirstTick, l.LastTick)
	}
}
