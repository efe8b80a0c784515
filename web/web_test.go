package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/jitsu-unikernel/jitsu/control"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeDaemon answers Status from its fields; the other methods are unused.
type fakeDaemon struct {
	status []control.UnikernelStatus
	err    error
}

func (f *fakeDaemon) Status(context.Context) ([]control.UnikernelStatus, error) {
	return f.status, f.err
}
func (f *fakeDaemon) Start(context.Context, string) error        { return nil }
func (f *fakeDaemon) Stop(context.Context, string, string) error { return nil }
func (f *fakeDaemon) Reload(context.Context) error               { return nil }

// sampleStatus has one unikernel that booted at t0 and one never booted.
func sampleStatus(t0 time.Time) []control.UnikernelStatus {
	return []control.UnikernelStatus{
		{
			Name: "www-demo", State: "ready", Addrs: []string{"10.77.0.2"},
			Since: t0.Add(1200 * time.Millisecond), LastActivity: t0.Add(1500 * time.Millisecond),
			Boots: 1, LastBootDuration: 1150 * time.Millisecond,
			LastBoot: &control.BootTimeline{
				Query: t0, Start: t0.Add(20 * time.Millisecond),
				Ready: t0.Add(1170 * time.Millisecond), FirstReplay: t0.Add(1172 * time.Millisecond),
			},
		},
		{Name: "blog", State: "stopped", LastError: "boot timed out after 30s"},
	}
}

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestAPIStatus(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	want := sampleStatus(t0)
	s := New(Options{Daemon: &fakeDaemon{status: want}})
	rec := get(t, s, "/api/status")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /api/status: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got []control.UnikernelStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(got) != 2 || got[0].Name != "www-demo" || got[0].LastBoot == nil ||
		!got[0].LastBoot.FirstReplay.Equal(want[0].LastBoot.FirstReplay) || got[1].LastError != want[1].LastError {
		t.Errorf("got %+v, want %+v", got, want)
	}
	// The JS reads these keys; a zero time is left out, not "0001-01-01".
	body := rec.Body.String()
	for _, key := range []string{`"last_boot"`, `"first_replay"`, `"last_boot_duration_ns":1150000000`} {
		if !strings.Contains(body, key) {
			t.Errorf("body lacks %s: %s", key, body)
		}
	}
	if strings.Contains(body, "0001-01-01") {
		t.Errorf("zero time on the wire: %s", body)
	}
}

func TestAPIStatusErrors(t *testing.T) {
	tests := []struct {
		name string
		d    control.Daemon
		code int
		body string
	}{
		{"no daemon", nil, http.StatusServiceUnavailable, "no daemon"},
		{"daemon error", &fakeDaemon{err: errors.New("summoner gone")}, http.StatusInternalServerError, "summoner gone"},
		{"empty list", &fakeDaemon{}, http.StatusOK, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := get(t, New(Options{Daemon: tt.d}), "/api/status")
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.body) {
				t.Errorf("got %d %q, want %d containing %q", rec.Code, rec.Body, tt.code, tt.body)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "jitsu_test_events_total", Help: "Test events."})
	reg.MustRegister(c)
	c.Add(42)
	s := New(Options{Registry: reg})
	rec := get(t, s, "/metrics")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	if !strings.Contains(rec.Body.String(), "jitsu_test_events_total 42") {
		t.Errorf("scrape lacks the test counter:\n%s", rec.Body)
	}
	if rec := get(t, New(Options{}), "/metrics"); rec.Code != http.StatusNotFound {
		t.Errorf("GET /metrics without a registry: %d, want 404", rec.Code)
	}
}

func TestPprof(t *testing.T) {
	tests := []struct {
		pprof bool
		code  int
	}{{false, http.StatusNotFound}, {true, http.StatusOK}}
	for _, tt := range tests {
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
			if rec := get(t, New(Options{Pprof: tt.pprof}), path); rec.Code != tt.code {
				t.Errorf("Pprof=%v GET %s: %d, want %d", tt.pprof, path, rec.Code, tt.code)
			}
		}
	}
}

func TestPage(t *testing.T) {
	s := New(Options{})
	tests := []struct {
		path, ctype, contains string
	}{
		{"/", "text/html", `<script src="static/app.js">`},
		{"/static/app.js", "javascript", "api/status"},
		{"/static/style.css", "text/css", ".boot"},
	}
	for _, tt := range tests {
		rec := get(t, s, tt.path)
		if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Content-Type"), tt.ctype) ||
			!strings.Contains(rec.Body.String(), tt.contains) {
			t.Errorf("GET %s: %d %q, want 200 %s containing %q", tt.path, rec.Code, rec.Header().Get("Content-Type"), tt.ctype, tt.contains)
		}
	}
	if rec := get(t, s, "/nope"); rec.Code != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", rec.Code)
	}
}

func TestServeListenerStopsOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := New(Options{Registry: reg, Daemon: &fakeDaemon{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListener(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/api/status")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("body %q, want []", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeListener: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestRunStopsOnCancel: Run listens on Options.Listen, closes Ready,
// serves, and returns once its context ends.
func TestRunStopsOnCancel(t *testing.T) {
	s := New(Options{Daemon: &fakeDaemon{}, Listen: "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	resp, err := http.Get("http://" + s.Addr().String() + "/api/status")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/status: %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
	if ln, err := net.Listen("tcp", s.Addr().String()); err != nil {
		t.Errorf("port still held after Run returned: %v", err)
	} else {
		ln.Close()
	}
}

func TestServeBadAddress(t *testing.T) {
	err := New(Options{}).Serve(context.Background(), "256.0.0.1:80")
	if err == nil || !strings.Contains(err.Error(), "256.0.0.1:80") {
		t.Errorf("err = %v, want it to name the address", err)
	}
}
