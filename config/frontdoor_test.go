package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFrontdoorDefaults(t *testing.T) {
	c := mustParse(t, base+unikernel("a", "2"))
	f := c.Frontdoor
	if len(f.Listen) != 0 || !slices.Equal(f.TLSPorts, []uint16{443}) || f.NameTimeout != 10*time.Second ||
		f.MaxHeaderBytes != 16<<10 || f.MaxPending != 4096 || f.MaxPendingPerSource != 64 ||
		f.MaxWaiting != 1024 || f.MaxWaitingPerUnikernel != 256 || f.MaxConnections != 10000 || f.DialTimeout != 5*time.Second {
		t.Errorf("defaults %+v", f)
	}
	u := c.Unikernels[0]
	if u.Frontdoor || u.ProxyProtocol || u.Files != nil {
		t.Errorf("unikernel defaults: frontdoor %v proxy %v files %v", u.Frontdoor, u.ProxyProtocol, u.Files)
	}
}

func TestFrontdoorKeys(t *testing.T) {
	text := base + `
[frontdoor]
listen = ["203.0.113.10:80", "[2001:db8::1]:443", "203.0.113.10:443"]
tls_ports = [443, 8443]
name_timeout = "3s"
max_header_bytes = "8KiB"
max_pending = 10
max_pending_per_source = 2
max_waiting = 20
max_waiting_per_unikernel = 5
max_connections = 100
dial_timeout = "1s"
` + unikernel("blog", "2", `frontdoor = true`, `proxy_protocol = true`,
		`files = { "tls/cert.pem" = "/etc/jitsu/blog/cert.pem", "tls/key.pem" = "/etc/jitsu/blog/key.pem" }`)
	c := mustParse(t, text)
	f := c.Frontdoor
	want := []netip.AddrPort{netip.MustParseAddrPort("203.0.113.10:80"), netip.MustParseAddrPort("[2001:db8::1]:443"), netip.MustParseAddrPort("203.0.113.10:443")}
	if !slices.Equal(f.Listen, want) || !slices.Equal(f.TLSPorts, []uint16{443, 8443}) || !f.IsTLS(8443) || f.IsTLS(80) {
		t.Errorf("listen %v tls_ports %v", f.Listen, f.TLSPorts)
	}
	if f.NameTimeout != 3*time.Second || f.MaxHeaderBytes != 8192 || f.MaxPending != 10 || f.MaxPendingPerSource != 2 ||
		f.MaxWaiting != 20 || f.MaxWaitingPerUnikernel != 5 || f.MaxConnections != 100 || f.DialTimeout != time.Second {
		t.Errorf("limits %+v", f)
	}
	if a := f.IPv4(); a != netip.MustParseAddr("203.0.113.10") {
		t.Errorf("IPv4() = %v", a)
	}
	if c.Hypervisor.SeedDir != DefaultSeedDir {
		t.Errorf("seed_dir = %q", c.Hypervisor.SeedDir)
	}
	u := c.Unikernels[0]
	if !u.Frontdoor || !u.ProxyProtocol || len(u.Files) != 2 || u.Files["tls/key.pem"] != "/etc/jitsu/blog/key.pem" {
		t.Errorf("unikernel: frontdoor %v proxy %v files %v", u.Frontdoor, u.ProxyProtocol, u.Files)
	}
}

func TestFrontdoorErrors(t *testing.T) {
	fd := "\n[frontdoor]\nlisten = [\"203.0.113.10:443\"]\n"
	tests := []struct {
		name, text string
		want       []wantErr
	}{
		{"frontdoor without listen", unikernel("a", "2", "frontdoor = true # E1"),
			[]wantErr{{"# E1", "unikernel[0].frontdoor", "[frontdoor] listen is empty"}}},
		{"frontdoor without IPv4", "\n[frontdoor]\nlisten = [\"0.0.0.0:443\", \"[2001:db8::1]:443\"]\n" + unikernel("a", "2", "frontdoor = true # E1"),
			[]wantErr{{"# E1", "unikernel[0].frontdoor", "no specific IPv4 address"}}},
		{"relative seed_dir", "\n[hypervisor]\nseed_dir = \"seed\" # E1\n",
			[]wantErr{{"# E1", "hypervisor.seed_dir", "not an absolute path"}}},
		{"proxy without frontdoor", fd + unikernel("a", "2", "proxy_protocol = true # E1"),
			[]wantErr{{"# E1", "unikernel[0].proxy_protocol", "set frontdoor = true"}}},
		{"bad listen", "\n[frontdoor]\nlisten = [\"x:443\"] # E1\n",
			[]wantErr{{"# E1", "frontdoor.listen[0]", "not an \"ip:port\""}}},
		{"port 0", "\n[frontdoor]\nlisten = [\"127.0.0.1:0\"] # E1\n",
			[]wantErr{{"# E1", "frontdoor.listen[0]", "port 0"}}},
		{"same as dns", "\n[dns]\nlisten = [\"127.0.0.1:53\"]\n[frontdoor]\nlisten = [\"127.0.0.1:53\"] # E1\n",
			[]wantErr{{"# E1", "frontdoor.listen[0]", "also in dns.listen"}}},
		{"bad tls port", "\n[frontdoor]\ntls_ports = [443, 70000] # E1\n",
			[]wantErr{{"# E1", "frontdoor.tls_ports[1]", "not a port number"}}},
		{"tls_ports type", "\n[frontdoor]\ntls_ports = 443 # E1\n",
			[]wantErr{{"# E1", "frontdoor.tls_ports", "want array of port numbers"}}},
		{"tiny header cap", "\n[frontdoor]\nmax_header_bytes = 100 # E1\n",
			[]wantErr{{"# E1", "frontdoor.max_header_bytes", "out of range"}}},
		{"zero cap", "\n[frontdoor]\nmax_waiting = 0 # E1\n",
			[]wantErr{{"# E1", "frontdoor.max_waiting", "out of range"}}},
		{"zero timeout", "\n[frontdoor]\nname_timeout = \"0s\" # E1\n",
			[]wantErr{{"# E1", "frontdoor.name_timeout", "must be positive"}}},
		{"unknown key", "\n[frontdoor]\nlisten_tls = [] # E1\n",
			[]wantErr{{"# E1", "frontdoor.listen_tls", "unknown key"}}},
		{"files relative source", unikernel("a", "2", "files = { \"k.pem\" = \"k.pem\" } # E1"),
			[]wantErr{{"# E1", "unikernel[0].files.\"k.pem\"", "not an absolute path"}}},
		{"files absolute name", unikernel("a", "2", "files = { \"/k\" = \"/etc/k\" } # E1"),
			[]wantErr{{"# E1", "unikernel[0].files.\"/k\"", "must be relative"}}},
		{"files dotdot", unikernel("a", "2", "files = { \"../k\" = \"/etc/k\" } # E1"),
			[]wantErr{{"# E1", "unikernel[0].files.\"../k\"", "clean relative path"}}},
		{"files long name", unikernel("a", "2", "files = { "+strings.Repeat("a", 120)+" = \"/etc/k\" } # E1"),
			[]wantErr{{"# E1", "unikernel[0].files." + strings.Repeat("a", 120), "too long for the tar format"}}},
		{"files type", unikernel("a", "2", "files = [\"/etc/k\"] # E1"),
			[]wantErr{{"# E1", "unikernel[0].files", "want table"}}},
		{"files value type", unikernel("a", "2", "files = { k = 1 } # E1"),
			[]wantErr{{"# E1", "unikernel[0].files.k", "want string"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := base + tc.text
			_, err := Parse("test.toml", []byte(text))
			checkErrors(t, text, err, tc.want)
		})
	}
}
