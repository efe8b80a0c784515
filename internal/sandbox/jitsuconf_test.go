package sandbox

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitsu-unikernel/jitsu/config"
)

// TestJitsuConfigValid: the rendered config passes jitsu's own validation
// and carries what was asked for.
func TestJitsuConfigValid(t *testing.T) {
	dir := t.TempDir()
	c := JitsuConfig{
		SynProxy: true, Serial: 42, ResponseDelay: "2s", ConsoleDir: dir, Socket: filepath.Join(dir, "c.sock"), Metrics: "127.0.0.1:9153",
		Frontdoor: []string{"127.0.0.1:80", "127.0.0.1:443"},
		DNSListen: []string{"127.0.0.1:5353", "10.214.0.1:5353"}, Secondaries: []string{"10.214.0.2", "127.0.0.2:5354"},
		Image: Image{Kernel: "/img/bzImage", VMLinux: "/img/vmlinux", Initrd: "/img/initrd.cpio", Cmdline: "console=ttyS0 quiet"},
		Unikernels: []JitsuUnikernel{
			{Name: "www", IP: "10.213.0.5", Frontdoor: true, Files: map[string]string{"tls/key.pem": "/k.pem", "a b": "/c"}},
			{Name: "broken", IP: "10.213.0.9", Kernel: MultibootKernel, BootTimeout: "4s", StopMode: "save", IdleTimeout: "0s"},
		},
	}
	cfg := writeAndLoad(t, c, filepath.Join(dir, "jitsu.toml"))
	www, broken := cfg.Unikernel("www"), cfg.Unikernel("broken")
	if www == nil || broken == nil {
		t.Fatalf("unikernels %+v", cfg.Unikernels)
	}
	if !www.Frontdoor || www.Files["tls/key.pem"] != "/k.pem" || www.Files["a b"] != "/c" || len(cfg.Frontdoor.Listen) != 2 {
		t.Errorf("front door: www %v %v, listen %v", www.Frontdoor, www.Files, cfg.Frontdoor.Listen)
	}
	if www.Kernel != "/img/vmlinux" || www.Initrd != "/img/initrd.cpio" {
		t.Errorf("www boots %q %q, want the PVH kernel and the initrd", www.Kernel, www.Initrd)
	}
	if want := "console=ttyS0 quiet ip=10.213.0.5::10.213.0.1:255.255.255.0::eth0:off"; www.Cmdline != want {
		t.Errorf("www cmdline %q, want %q", www.Cmdline, want)
	}
	if broken.Kernel != MultibootKernel || broken.Initrd != "" || broken.StopMode != "save" || broken.IdleTimeout != 0 {
		t.Errorf("broken: %+v", broken)
	}
	if got := fmt.Sprint(cfg.DNS.Listen); got != "[127.0.0.1:5353 10.214.0.1:5353]" {
		t.Errorf("dns.listen %s", got)
	}
	if got := fmt.Sprint(cfg.Zones[0].Secondaries); got != "[10.214.0.2:53 127.0.0.2:5354]" {
		t.Errorf("secondaries %s", got)
	}
	if got := cfg.Zones[0].SOA; !strings.Contains(got, " 42 ") {
		t.Errorf("SOA %q, want serial 42", got)
	}
	if !cfg.SynProxy.Enabled || cfg.DNS.ResponseDelay.String() != "2s" || cfg.Metrics.Listen != "127.0.0.1:9153" {
		t.Errorf("synproxy %v, response delay %v, metrics %q", cfg.SynProxy.Enabled, cfg.DNS.ResponseDelay, cfg.Metrics.Listen)
	}
}

// TestJitsuConfigOptions: the DNS listen address, the IPv6 gateway and
// address (with jitsu.ip6=/jitsu.gw6= on the command line) and the
// running budget reach jitsu's config.
func TestJitsuConfigOptions(t *testing.T) {
	dir := t.TempDir()
	c := JitsuConfig{
		ConsoleDir: dir, Socket: filepath.Join(dir, "c.sock"),
		DNSListen: []string{"127.0.0.1:5354"}, Gateway6: "fd00:213::1/64", MaxRunning: 2,
		Image: Image{Kernel: "/img/bzImage", Initrd: "/img/initrd.cpio", Cmdline: "console=ttyS0"},
		Unikernels: []JitsuUnikernel{
			{Name: "six", IP: "10.213.0.5", IP6: "fd00:213::5"},
			{Name: "four", IP: "10.213.0.6"},
		},
	}
	cfg := writeAndLoad(t, c, filepath.Join(dir, "jitsu.toml"))
	if len(cfg.DNS.Listen) != 1 || cfg.DNS.Listen[0] != "127.0.0.1:5354" || cfg.Budget.MaxRunning != 2 {
		t.Errorf("dns.listen %v, budget.max_running %d", cfg.DNS.Listen, cfg.Budget.MaxRunning)
	}
	six, four := cfg.Unikernel("six"), cfg.Unikernel("four")
	if want := "console=ttyS0 ip=10.213.0.5::10.213.0.1:255.255.255.0::eth0:off jitsu.ip6=fd00:213::5/64 jitsu.gw6=fd00:213::1"; six.Cmdline != want {
		t.Errorf("six cmdline %q, want %q", six.Cmdline, want)
	}
	if want := "console=ttyS0 ip=10.213.0.6::10.213.0.1:255.255.255.0::eth0:off"; four.Cmdline != want {
		t.Errorf("four cmdline %q, want %q", four.Cmdline, want)
	}
}

// writeAndLoad writes c to path and loads it back as jitsu would.
func writeAndLoad(t *testing.T, c JitsuConfig, path string) *config.Config {
	t.Helper()
	if err := c.Write(path); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("rendered config is invalid: %v", err)
	}
	return cfg
}
