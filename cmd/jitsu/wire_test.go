package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/synproxy"
	"github.com/miekg/dns"
)

// TestDNSConfigTransfers checks that dnsConfig hands the DNS server each
// zone's secondaries and TSIG key, and every unikernel's addresses (the
// A/AAAA records of its names in transfers).
func TestDNSConfigTransfers(t *testing.T) {
	key := filepath.Join(t.TempDir(), "xfr.key")
	secret := "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg=="
	if err := os.WriteFile(key, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("t.toml", []byte(`[network]
gateway = "10.213.0.1/24"
gateway6 = "fd00::1/64"

[[zone]]
origin = "example.test."
soa = "ns1 hostmaster 1 3600 600 86400 60"
ns = ["ns1"]
records = ["ns1 A 127.0.0.1"]
secondaries = ["192.0.2.53", "[2001:db8::53]:5353"]
tsig = { name = "xfr.example.test.", secret_file = "`+key+`" }

[[unikernel]]
name = "www"
dns = ["www.example.test."]
ip = "10.213.0.5"
ip6 = "fd00::5"
kernel = "/k"
`))
	if err != nil {
		t.Fatal(err)
	}
	d := dnsConfig(cfg)
	z := d.Zones[0]
	want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53"), netip.MustParseAddrPort("[2001:db8::53]:5353")}
	if !slices.Equal(z.Secondaries, want) {
		t.Errorf("secondaries %v, want %v", z.Secondaries, want)
	}
	if z.TSIG == nil || z.TSIG.Name != "xfr.example.test." || z.TSIG.Algorithm != dns.HmacSHA256 || z.TSIG.Secret != secret {
		t.Errorf("TSIG %+v", z.TSIG)
	}
	if a := d.Addrs["www"]; !slices.Equal(a, []netip.Addr{netip.MustParseAddr("10.213.0.5"), netip.MustParseAddr("fd00::5")}) {
		t.Errorf("addresses of www: %v", a)
	}
}

// TestDerivedMACsAgree: a spec without a MAC gets, from every backend, the
// MAC config derives (jitsu always sets it; the two must not drift).
func TestDerivedMACsAgree(t *testing.T) {
	for _, name := range []string{"www", "u34929", "a.b-c_d"} {
		dom := config.DomainPrefix + name
		if got, want := (hypervisor.Spec{Name: dom}).NIC(), config.DeriveMAC(dom); got.String() != want.String() {
			t.Errorf("%s: hypervisor derives %v, config %v", dom, got, want)
		}
	}
}

// TestNFQueuePerInstance: two instance ids get different NFQUEUE numbers
// (the kernel binds a queue to one process), the same id always the same,
// and every number is above the synproxy's default.
func TestNFQueuePerInstance(t *testing.T) {
	ids := []string{"jitsu-0a1b2c3d", "jitsu-7f00aa01", "web", "mail"}
	seen := map[uint16]string{}
	for _, id := range ids {
		cfg := &config.Config{Daemon: config.DaemonConfig{ID: id}}
		q := nfQueue(cfg)
		if again := nfQueue(cfg); again != q {
			t.Errorf("%s: queue %d then %d", id, q, again)
		}
		if q < synproxy.DefaultQueue || int(q) >= synproxy.DefaultQueue+queueSpan {
			t.Errorf("%s: queue %d outside [%d, %d)", id, q, synproxy.DefaultQueue, synproxy.DefaultQueue+queueSpan)
		}
		if other, ok := seen[q]; ok {
			t.Errorf("%s and %s share queue %d", id, other, q)
		}
		seen[q] = id
	}
}
