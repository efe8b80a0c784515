package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

func TestHandler(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"index.html":   "<h1>home</h1>",
		"css/site.css": "body{}",
		"app.js":       "let x",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var cfg atomic.Pointer[BootConfig]
	cfg.Store(&BootConfig{Root: dir, Name: "www.example.org", Port: 80})
	srv := httptest.NewServer(handler(&cfg))
	t.Cleanup(srv.Close)

	tests := []struct {
		path, wantBody, wantType string
		wantStatus               int
	}{
		{"/", "<h1>home</h1>", "text/html; charset=utf-8", http.StatusOK},
		{"/css/site.css", "body{}", "text/css; charset=utf-8", http.StatusOK},
		{"/app.js", "let x", "text/javascript; charset=utf-8", http.StatusOK},
		{"/missing.html", "", "", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("X-Jitsu-Name"); got != "www.example.org" {
				t.Errorf("X-Jitsu-Name = %q, want www.example.org", got)
			}
			if tt.wantStatus != http.StatusOK {
				return
			}
			if string(body) != tt.wantBody {
				t.Errorf("body %q, want %q", body, tt.wantBody)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type %q, want %q", got, tt.wantType)
			}
		})
	}
}

func TestHandlerBeforeConfig(t *testing.T) {
	// Requests that arrive before /proc/cmdline has been parsed are served
	// from the default root without a name header.
	var cfg atomic.Pointer[BootConfig]
	srv := httptest.NewServer(handler(&cfg))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Jitsu-Name"); got != "" {
		t.Errorf("X-Jitsu-Name = %q before the config is known", got)
	}
	// /www does not exist on the test machine: 404, not a crash.
	if _, err := os.Stat("/www"); os.IsNotExist(err) && resp.StatusCode != http.StatusNotFound {
		t.Errorf("status %d, want 404 for a missing /www", resp.StatusCode)
	}
}

func TestBytes(t *testing.T) {
	var cfg atomic.Pointer[BootConfig]
	srv := httptest.NewServer(handler(&cfg))
	t.Cleanup(srv.Close)
	tests := []struct {
		query  string
		status int
		size   int
	}{
		{"?n=0", http.StatusOK, 0},
		{"?n=200000", http.StatusOK, 200000},
		{"?n=-1", http.StatusBadRequest, -1},
		{"?n=x", http.StatusBadRequest, -1},
		{"?n=1073741825", http.StatusBadRequest, -1},
	}
	for _, tt := range tests {
		resp, err := http.Get(srv.URL + bytesPath + tt.query)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || tt.size >= 0 && len(body) != tt.size {
			t.Errorf("%s: %d, %d bytes; want %d, %d", tt.query, resp.StatusCode, len(body), tt.status, tt.size)
		}
	}
}
