package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"
)

// The "internet" of TestTopology: one segment (a bridge in the client's
// namespace) joining the client, a caching resolver and the server's
// public IPv4 address.
const (
	publicIP   = "203.0.113.10" // the server's one public IPv4: DNS and the front door
	clientIP4  = "203.0.113.20"
	resolverIP = "203.0.113.30"

	// IPv6: the client and the server share a link (2001:db8:1::/64), and
	// the client routes the server's prefix for the guests, which is on the
	// server's bridge, through the server's link address.
	publicIP6 = "2001:db8:1::10"
	clientIP6 = "2001:db8:1::20"
	guestNet6 = "2001:db8:213::/64"
	gateway6  = "2001:db8:213::1/64"
	blogIP6   = "2001:db8:213::5"
)

// TestTopology: a client on the "internet" resolves through a caching
// resolver (Debian's unbound, cache-min-ttl 60) and fetches, cold,
// https://blog.example.test/ (SNI through the front door, the certificate
// checked against the test CA) and http://www.example.test/ (Host). After
// blog idles out, the resolver answers from its cache without asking
// jitsu, and the fetch through the front door summons blog again. After it
// idles out once more, the client asks for blog's AAAA (the guest's own
// address, not the front door's) and fetches https://blog.example.test/
// over IPv6 directly, cold: the server routes the prefix to its bridge, and
// the client's SYN waits in the SYN hold while blog boots.
func TestTopology(t *testing.T) {
	unbound, err := exec.LookPath("unbound")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("unbound not installed (scripts/install-deps.sh): %v", err)
		}
		t.Skipf("unbound not installed (scripts/install-deps.sh): %v", err)
	}
	certPEM, keyPEM, pool := testCert(t, "blog.example.test")
	secrets := t.TempDir()
	certFile, keyFile := filepath.Join(secrets, "cert.pem"), filepath.Join(secrets, "key.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	w := newWorld(t, true,
		unikernelConf{Name: "blog", IP: "10.213.0.5", IP6: blogIP6, Frontdoor: true, IdleTimeout: "4s",
			Files: map[string]string{"tls/cert.pem": certFile, "tls/key.pem": keyFile}},
		unikernelConf{Name: "www", IP: "10.213.0.6", Frontdoor: true},
	)
	w.data.Frontdoor = []string{publicIP + ":80", publicIP + ":443"}
	w.data.DNSListen = []string{publicIP + ":53"}
	w.data.Gateway6 = gateway6
	w.writeConf()
	inet := internet(t, w)
	resolverNS := inet.attach(t, "res", resolverIP)
	pub := inet.attachServer(t, w.env.NS, publicIP)
	inet.route6(t, w, pub)
	startUnbound(t, unbound, resolverNS)
	w.startJitsu()
	t.Cleanup(func() { os.Remove("/var/lib/jitsu/seed/blog.seed.tar") })

	// Cold, through the resolver.
	if a := inet.resolve(t, "blog.example.test"); a != publicIP {
		t.Fatalf("blog.example.test resolved to %s, want the front door's %s", a, publicIP)
	}
	start := time.Now()
	inet.fetch(t, pool, "https://blog.example.test/")
	t.Logf("cold HTTPS fetch (SNI) through the resolver's answer: %v", time.Since(start).Round(time.Millisecond))
	if a := inet.resolve(t, "www.example.test"); a != publicIP {
		t.Fatalf("www.example.test resolved to %s", a)
	}
	start = time.Now()
	inet.fetch(t, pool, "http://www.example.test/")
	t.Logf("cold HTTP fetch (Host): %v", time.Since(start).Round(time.Millisecond))

	// Idle out, then the cached answer: jitsu is not asked again, and the
	// front door summons blog.
	w.waitState("blog", 60*time.Second, "stopped")
	queries := w.metric("jitsu_dns_queries_total")
	if a := inet.resolve(t, "blog.example.test"); a != publicIP {
		t.Fatalf("cached answer %s", a)
	}
	if q := w.metric("jitsu_dns_queries_total"); q != queries {
		t.Errorf("jitsu got %v queries for a name the resolver has cached (cache-min-ttl 60)", q-queries)
	}
	start = time.Now()
	inet.fetch(t, pool, "https://blog.example.test/")
	t.Logf("HTTPS fetch after idle-out, with the resolver's cached answer: %v", time.Since(start).Round(time.Millisecond))
	if s := w.status("blog"); s.Boots != 2 {
		t.Errorf("blog booted %d times, want 2 (the front door summoned it again)", s.Boots)
	}

	// IPv6, directly: AAAA is the guest's own, the SYN waits in the hold.
	w.waitState("blog", 60*time.Second, "stopped")
	if a := inet.resolveType(t, "blog.example.test", dns.TypeAAAA); a != blogIP6 {
		t.Fatalf("blog.example.test AAAA %s, want the guest's own %s", a, blogIP6)
	}
	start = time.Now()
	inet.fetchAt(t, pool, "https://blog.example.test/", blogIP6)
	t.Logf("cold HTTPS fetch over IPv6, direct through the SYN hold: %v", time.Since(start).Round(time.Millisecond))
	if s := w.status("blog"); s.Boots != 3 {
		t.Errorf("blog booted %d times, want 3 (the IPv6 fetch summoned it)", s.Boots)
	}
}

// inet is the client's namespace, holding the "internet" bridge.
type inet struct {
	name string
	h    netns.NsHandle
	n    int // veths made
}

func internet(t *testing.T, w *world) *inet {
	name := fmt.Sprintf("jt-inet-%d", os.Getpid())
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	sh(t, "ip", "-n", name, "link", "add", "br-inet", "type", "bridge")
	sh(t, "ip", "-n", name, "addr", "add", clientIP4+"/24", "dev", "br-inet")
	sh(t, "ip", "-n", name, "addr", "add", clientIP6+"/64", "dev", "br-inet", "nodad")
	sh(t, "ip", "-n", name, "link", "set", "br-inet", "up")
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return &inet{name: name, h: h}
}

// attach makes a namespace with addr on a veth plugged into the bridge.
func (in *inet) attach(t *testing.T, label, addr string) string {
	ns := fmt.Sprintf("jt-%s-%d", label, os.Getpid())
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	in.plug(t, ns, addr)
	sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

// attachServer gives the server's namespace its public address and
// returns the name of its link to the internet.
func (in *inet) attachServer(t *testing.T, ns, addr string) string { return in.plug(t, ns, addr) }

// route6 gives the server its public IPv6 address on link pub and the
// guests' gateway on its bridge, lets it forward IPv6, and routes the
// guests' prefix from the client to the server.
func (in *inet) route6(t *testing.T, w *world, pub string) {
	t.Helper()
	ns := w.env.NS
	sh(t, "ip", "-n", ns, "addr", "add", publicIP6+"/64", "dev", pub, "nodad")
	sh(t, "ip", "-n", ns, "addr", "add", gateway6, "dev", w.env.Bridge, "nodad")
	sh(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	sh(t, "ip", "-n", in.name, "-6", "route", "add", guestNet6, "via", publicIP6)
}

// plug makes a veth between the bridge and ns, gives it addr in ns, and
// returns its name in ns.
func (in *inet) plug(t *testing.T, ns, addr string) string {
	in.n++
	port, peer := fmt.Sprintf("inet%d", in.n), fmt.Sprintf("pub%d", in.n)
	sh(t, "ip", "-n", in.name, "link", "add", port, "type", "veth", "peer", "name", peer, "netns", ns)
	sh(t, "ip", "-n", in.name, "link", "set", port, "master", "br-inet", "up")
	sh(t, "ip", "-n", ns, "addr", "add", addr+"/24", "dev", peer)
	sh(t, "ip", "-n", ns, "link", "set", peer, "up")
	return peer
}

// do runs fn on a thread inside the client's namespace.
func (in *inet) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(in.h); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// resolve asks the resolver for name's A record.
func (in *inet) resolve(t *testing.T, name string) string {
	t.Helper()
	return in.resolveType(t, name, dns.TypeA)
}

// resolveType asks the resolver for name's A or AAAA record.
func (in *inet) resolveType(t *testing.T, name string, qtype uint16) string {
	t.Helper()
	var resp *dns.Msg
	err := in.do(func() error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		var err error
		resp, _, err = (&dns.Client{Timeout: 10 * time.Second}).Exchange(m, resolverIP+":53")
		return err
	})
	if err != nil {
		t.Fatalf("resolve %s through the resolver: %v", name, err)
	}
	for _, rr := range resp.Answer {
		switch a := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA {
				return a.A.String()
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA {
				return a.AAAA.String()
			}
		}
	}
	t.Fatalf("resolve %s: no %s record in %v", name, dns.TypeToString[qtype], resp)
	return ""
}

// fetch GETs url from the client's namespace, connecting to the address
// the resolver gives for its host, and checks the example page.
func (in *inet) fetch(t *testing.T, pool *x509.CertPool, url string) {
	t.Helper()
	host := strings.SplitN(strings.SplitN(url, "://", 2)[1], "/", 2)[0]
	in.fetchAt(t, pool, url, in.resolve(t, host))
}

// fetchAt GETs url from the client's namespace, connecting to ip, and
// checks the example page.
func (in *inet) fetchAt(t *testing.T, pool *x509.CertPool, url, ip string) {
	t.Helper()
	tr := &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			var c net.Conn
			err := in.do(func() error {
				var d net.Dialer
				var err error
				c, err = d.DialContext(ctx, network, net.JoinHostPort(ip, port))
				return err
			})
			return c, err
		},
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 60 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), page) {
		t.Fatalf("GET %s: %s %q", url, resp.Status, body)
	}
}

// startUnbound runs unbound in ns as a caching resolver for the client,
// example.test. stubbed to jitsu's public address.
func startUnbound(t *testing.T, bin, ns string) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "unbound.conf")
	text := `server:
    interface: ` + resolverIP + `
    port: 53
    access-control: 203.0.113.0/24 allow
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "` + dir + `"
    pidfile: "` + dir + `/unbound.pid"
    use-syslog: no
    logfile: ""
    module-config: "iterator"
    cache-min-ttl: 60
    do-not-query-localhost: no
    domain-insecure: "example.test."
    # unbound answers the special-use name test. itself (RFC 6761)
    local-zone: "test." nodefault
stub-zone:
    name: "example.test."
    stub-addr: ` + publicIP + `@53
remote-control:
    control-enable: no
`
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "-d", "-c", conf)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start unbound: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("unbound output:\n%s", out.String())
		}
	})
}

func sh(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
