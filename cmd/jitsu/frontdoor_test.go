package main

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/dnsserver"
	"github.com/jitsu-unikernel/jitsu/frontdoor"
	"github.com/jitsu-unikernel/jitsu/hypervisor/hvtest"
	"github.com/jitsu-unikernel/jitsu/summoner"
)

const frontdoorTOML = `
[network]
gateway = "10.213.0.1/24"
gateway6 = "fd00:213::1/64"

[frontdoor]
listen = ["0.0.0.0:8080", "203.0.113.10:80", "203.0.113.10:443"]

[[zone]]
origin = "example.test."
soa = "ns1 hostmaster 1 3600 600 86400 60"
ns = ["ns1"]
records = ["ns1 A 127.0.0.1"]

[[unikernel]]
name = "blog"
dns = ["blog.example.test.", "example.test."]
ip = "10.213.0.5"
ip6 = "fd00:213::5"
kernel = "/k"
frontdoor = true
proxy_protocol = true
boot_timeout = "7s"
files = { "tls/key.pem" = "/etc/jitsu/blog/key.pem" }

[[unikernel]]
name = "www"
dns = ["www.example.test."]
ip = "10.213.0.6"
kernel = "/k"
`

type fakeDNSSummoner []netip.Addr

func (f fakeDNSSummoner) Summon(context.Context, string) ([]netip.Addr, error) { return f, nil }

func TestFrontdoorWiring(t *testing.T) {
	cfg, err := config.Parse("test.toml", []byte(frontdoorTOML))
	if err != nil {
		t.Fatal(err)
	}
	hv := hvtest.New()
	defer hv.Close()
	sum, err := summoner.New(summoner.Options{Hypervisor: hv}, unikernels(cfg)) // not run: only the wiring is looked at
	if err != nil {
		t.Fatal(err)
	}
	routes := frontdoorRoutes(cfg, sum.SettleBound)
	// The front door waits as long as the summoner's own worst case, its
	// start queue included, and retries a ready guest's port for its boot
	// timeout.
	want := frontdoor.Route{Unikernel: "blog", ProxyProtocol: true, MaxWait: sum.SettleBound("blog"), BootTimeout: 7 * time.Second}
	if len(routes) != 2 || routes["blog.example.test"] != want || routes["example.test"] != want {
		t.Errorf("routes %v", routes)
	}
	if want.MaxWait <= summoner.DefaultCreateTimeout+7*time.Second {
		t.Errorf("MaxWait %v: not above the create deadline and the boot timeout", want.MaxWait)
	}
	fd, err := newFrontDoor(cfg, sum, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// DNS: A of blog is the front door's, AAAA its own; www untouched.
	guest := fakeDNSSummoner{netip.MustParseAddr("10.213.0.5"), netip.MustParseAddr("fd00:213::5")}
	ds := fd.dnsSummoner(guest)
	if _, ok := ds.(dnsserver.Waiter); !ok {
		t.Error("the DNS wrapper hides dnsserver.Waiter (response delay)")
	}
	got, _ := ds.Summon(context.Background(), "blog")
	if want := []netip.Addr{netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("fd00:213::5")}; !slices.Equal(got, want) {
		t.Errorf("blog answers %v, want %v", got, want)
	}
	got, _ = ds.Summon(context.Background(), "www")
	if !slices.Equal(got, guest) {
		t.Errorf("www answers %v, want its own %v", got, guest)
	}
	// The query's source is passed on (admission control), rewritten the
	// same way.
	src := netip.MustParseAddr("198.51.100.7")
	inner := &refusingSummoner{err: summoner.ErrAdmission}
	got, err = fd.dnsSummoner(newAdmissionDNS(inner, cfg)).(dnsserver.SourceSummoner).SummonFrom(context.Background(), src, "blog")
	if err != nil || inner.from != src || len(got) != 1 || got[0] != netip.MustParseAddr("203.0.113.10") {
		t.Errorf("SummonFrom through the front door's wrapper: %v %v (source seen %v)", got, err, inner.from)
	}
	// Zone transfers carry the same addresses.
	if a := dnsConfig(cfg).Addrs["blog"]; len(a) != 2 || a[0] != netip.MustParseAddr("203.0.113.10") {
		t.Errorf("transferred addresses of blog: %v", a)
	}
	// The seed disk comes first, read-only.
	uks := unikernels(cfg)
	if d := uks[0].Spec.ReadOnlyDisks; len(d) != 1 || d[0] != "/var/lib/jitsu/seed/blog.seed.tar" {
		t.Errorf("blog read-only disks %v", d)
	}
	if d := uks[1].Spec.ReadOnlyDisks; d != nil {
		t.Errorf("www read-only disks %v", d)
	}
	if _, ok := ds.(dnsserver.SourceSummoner); !ok {
		t.Error("the DNS wrapper hides dnsserver.SourceSummoner (admission by source)")
	}
	got, _ = ds.(dnsserver.SourceSummoner).SummonFrom(context.Background(), netip.MustParseAddr("192.0.2.1"), "blog")
	if len(got) != 2 || got[0] != netip.MustParseAddr("203.0.113.10") {
		t.Errorf("blog answers by source %v", got)
	}
	if tr := uks[0].Triggers; !slices.Contains(tr, summoner.TriggerFrontDoor) || !slices.Contains(tr, summoner.TriggerDNS) {
		t.Errorf("blog's triggers %v: want the defaults and the front door", tr)
	}
	if tr := uks[1].Triggers; slices.Contains(tr, summoner.TriggerFrontDoor) {
		t.Errorf("www's triggers %v: no front door", tr)
	}
}

// TestFrontdoorRestartOnly: a change of [frontdoor] is reported as taking
// effect at the next start.
func TestFrontdoorRestartOnly(t *testing.T) {
	a, err := config.Parse("same.toml", []byte(frontdoorTOML))
	if err != nil {
		t.Fatal(err)
	}
	b, err := config.Parse("same.toml", []byte(strings.Replace(frontdoorTOML, `"203.0.113.10:443"]`, `"203.0.113.10:8443"]`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := restartOnly(a, a); len(got) != 0 {
		t.Errorf("restartOnly(a, a) = %v", got)
	}
	if got := restartOnly(a, b); len(got) != 1 || !strings.HasPrefix(got[0], "frontdoor") {
		t.Errorf("restartOnly = %v, want frontdoor", got)
	}
}
