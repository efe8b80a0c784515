package web

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestHTTPServerTimeouts(t *testing.T) {
	hs := newHTTPServer(http.NotFoundHandler(), zap.NewNop())
	for name, d := range map[string]int64{
		"ReadHeaderTimeout": int64(hs.ReadHeaderTimeout), "ReadTimeout": int64(hs.ReadTimeout),
		"WriteTimeout": int64(hs.WriteTimeout), "IdleTimeout": int64(hs.IdleTimeout),
	} {
		if d <= 0 {
			t.Errorf("%s not set", name)
		}
	}
	if hs.WriteTimeout <= maxProfileSeconds*1e9 {
		t.Errorf("WriteTimeout %v leaves no room for a %d s profile", hs.WriteTimeout, maxProfileSeconds)
	}
}

func TestProfileSecondsBounded(t *testing.T) {
	s := New(Options{Pprof: true})
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/debug/pprof/profile?seconds=3600", http.StatusBadRequest},
		{"/debug/pprof/profile?seconds=0", http.StatusBadRequest},
		{"/debug/pprof/profile?seconds=x", http.StatusBadRequest},
		{"/debug/pprof/trace?seconds=31", http.StatusBadRequest},
		{"/debug/pprof/trace?seconds=1", http.StatusOK},
	} {
		if got := get(t, s, tc.path).Code; got != tc.want {
			t.Errorf("GET %s: %d, want %d", tc.path, got, tc.want)
		}
	}
}

func writeSecret(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuth(t *testing.T) {
	basic := writeSecret(t, "prom:s3cret\n", 0o600)
	token := writeSecret(t, "tok-123\n", 0o600)
	for _, tc := range []struct {
		name         string
		basic, token string
		setup        func(r *http.Request)
		want         int
	}{
		{"no auth configured", "", "", func(*http.Request) {}, http.StatusOK},
		{"basic, none sent", basic, "", func(*http.Request) {}, http.StatusUnauthorized},
		{"basic, right", basic, "", func(r *http.Request) { r.SetBasicAuth("prom", "s3cret") }, http.StatusOK},
		{"basic, wrong password", basic, "", func(r *http.Request) { r.SetBasicAuth("prom", "s3cres") }, http.StatusUnauthorized},
		{"basic, wrong user", basic, "", func(r *http.Request) { r.SetBasicAuth("root", "s3cret") }, http.StatusUnauthorized},
		{"bearer, right", "", token, func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok-123") }, http.StatusOK},
		{"bearer, wrong", "", token, func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok-124") }, http.StatusUnauthorized},
		{"bearer, basic sent", "", token, func(r *http.Request) { r.SetBasicAuth("prom", "tok-123") }, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := LoadAuth(tc.basic, tc.token)
			if err != nil {
				t.Fatal(err)
			}
			s := New(Options{Auth: a})
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			tc.setup(r)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, r)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d", rec.Code, tc.want)
			}
			if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
}

func TestLoadAuthErrors(t *testing.T) {
	for _, tc := range []struct {
		name         string
		basic, token string
	}{
		{"both", writeSecret(t, "a:b", 0o600), writeSecret(t, "t", 0o600)},
		{"world-readable", writeSecret(t, "a:b", 0o644), ""},
		{"no colon", writeSecret(t, "ab", 0o600), ""},
		{"empty token", "", writeSecret(t, "\n", 0o600)},
		{"missing file", "/nonexistent/jitsu-token", ""},
	} {
		if _, err := LoadAuth(tc.basic, tc.token); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestWarnPublic(t *testing.T) {
	for _, tc := range []struct {
		addr string
		warn bool
	}{
		{"127.0.0.1:9153", false},
		{"[::1]:9153", false},
		{"0.0.0.0:9153", true},
		{"192.0.2.1:9153", true},
	} {
		core, logs := observer.New(zapcore.WarnLevel)
		ta, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		warnPublic(zap.New(core), ta, nil)
		if got := logs.Len() > 0; got != tc.warn {
			t.Errorf("%s: warned %v, want %v", tc.addr, got, tc.warn)
		}
	}
}
