package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/summoner"
)

// refusingSummoner refuses every boot with summoner.ErrAdmission (with the
// addresses, as the summoner does), or fails with err.
type refusingSummoner struct {
	err  error
	from netip.Addr
}

var refusedAddr = netip.MustParseAddr("10.0.0.9")

func (r *refusingSummoner) Summon(ctx context.Context, name string) ([]netip.Addr, error) {
	return r.SummonFrom(ctx, netip.Addr{}, name)
}

func (r *refusingSummoner) SummonFrom(_ context.Context, src netip.Addr, name string) ([]netip.Addr, error) {
	r.from = src
	if errors.Is(r.err, summoner.ErrAdmission) {
		return []netip.Addr{refusedAddr}, fmt.Errorf("summon %q: %w", name, r.err)
	}
	return nil, r.err
}

func (r *refusingSummoner) WaitReady(string) <-chan struct{} { return nil }

// TestAdmissionDNS: admission.on_refuse = "answer" answers a refused boot's
// addresses, "servfail" passes the refusal on (the DNS server answers
// SERVFAIL); other errors always pass; the source is passed on.
func TestAdmissionDNS(t *testing.T) {
	src := netip.MustParseAddr("198.51.100.1")
	other := errors.New("budget")
	for _, tc := range []struct {
		onRefuse string
		err      error
		wantErr  bool
	}{
		{config.OnRefuseAnswer, summoner.ErrAdmission, false},
		{config.OnRefuseServfail, summoner.ErrAdmission, true},
		{config.OnRefuseAnswer, other, true},
	} {
		t.Run(fmt.Sprintf("%s %v", tc.onRefuse, tc.err), func(t *testing.T) {
			inner := &refusingSummoner{err: tc.err}
			a := newAdmissionDNS(inner, &config.Config{Admission: config.AdmissionConfig{OnRefuse: tc.onRefuse}})
			addrs, err := a.SummonFrom(context.Background(), src, "www")
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && (len(addrs) != 1 || addrs[0] != refusedAddr) {
				t.Fatalf("addrs = %v", addrs)
			}
			if inner.from != src {
				t.Fatalf("source %v not passed on", inner.from)
			}
		})
	}
}

func TestMeminfo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(p, []byte("MemTotal: 1000 kB\nMemFree: 10 kB\nMemAvailable: 50 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if total, avail := meminfo(p); total != 1000<<10 || avail != 50<<10 {
		t.Fatalf("meminfo = %d, %d", total, avail)
	}
}

// TestCheckWarnsFit: `jitsu check` accepts a config whose unikernels cannot
// all run at once, with a warning on stderr.
func TestCheckWarnsFit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitsu.toml")
	text := frontdoorTOML + "\n[budget]\nmax_running = 1\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "check", "--config", path)
	if code != exitOK || !strings.Contains(out, "ok") || !strings.Contains(errs, "warning: 2 unikernels are configured and budget.max_running is 1") {
		t.Fatalf("check: code %d, stdout %q, stderr %q", code, out, errs)
	}
}
