package test

import (
	"strings"
	"testing"
	"time"
)

// TestConnectWithCachedAddress (issue 11): a client whose cached address
// outlives the unikernel connects after idle-out without any DNS query; its
// SYN, held at the armed address, boots the unikernel and is replayed: the
// page comes back with one more boot, triggered by tcp, and no reset.
func TestConnectWithCachedAddress(t *testing.T) {
	w := newWorld(t, true, unikernelConf{Name: "www", IP: "10.213.0.5", IdleTimeout: "3s"})
	w.startJitsu()

	addr := w.resolve("www.example.test")
	if _, err := w.get(addr, 30*time.Second); err != nil {
		t.Fatalf("first GET: %v", netErr(err))
	}
	w.waitState("www", 60*time.Second, "stopped")
	queries := w.metric("jitsu_dns_queries_total")

	start := time.Now()
	body, err := w.get(addr, 30*time.Second) // the cached address, no query
	if err != nil {
		t.Fatalf("GET with the cached address after idle-out: %v", netErr(err))
	}
	if !strings.Contains(body, page) {
		t.Fatalf("GET: unexpected page %q", body)
	}
	t.Logf("served %v after the SYN to the stopped unikernel", time.Since(start))
	if q := w.metric("jitsu_dns_queries_total"); q != queries {
		t.Errorf("DNS queries went from %v to %v: the test client must not query", queries, q)
	}
	s := w.status("www")
	if s.Boots != 2 || s.LastBoot == nil || s.LastBoot.Trigger != "tcp" || s.LastBoot.FirstReplay.IsZero() {
		t.Errorf("status %+v (last boot %+v): want 2 boots, the last triggered by tcp with a replayed SYN", s, s.LastBoot)
	}
	if n := w.metric("jitsu_unikernel_summons_total", `trigger="tcp"`); n != 1 {
		t.Errorf("jitsu_unikernel_summons_total{trigger=tcp} = %v, want 1", n)
	}
	if n := w.metric("jitsu_synproxy_resets_total"); n != 0 {
		t.Errorf("jitsu_synproxy_resets_total = %v, want 0", n)
	}
}
