// Command frontdoor (make bench-frontdoor) measures jitsu's front door on the path a client on the
// internet takes: a client namespace, a veth link to the server namespace
// (jitsu, libvirtd, the bridge) and the example unikernel serving HTTPS
// with the certificate of its seed-file disk. Three ways in, measured in
// interleaved rounds on the same running guest:
//
//	(a) the front door: routed by SNI, spliced (jitsu)
//	(b) direct: the client connects to the guest's own address (routed)
//	(c) HAProxy in TCP mode routing by req.ssl_sni (Debian's haproxy,
//	    option splice-auto)
//
// It prints, per case, the throughput of one large download (median over
// the rounds), the requests per second of small GETs over new connections
// (-concurrency clients for -rps-time), and the latency of a small GET on a
// new connection (p50, p99, and added over direct).
//
// It needs root, `make build image` and haproxy. Usage:
//
//	go run ./bench/frontdoor [-rounds 3] [-size 104857600] [-jitsu bin/jitsu] [-domain-type qemu|kvm]
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/jitsu-unikernel/jitsu/bench/internal/benchkit"
	"github.com/jitsu-unikernel/jitsu/control"
	"github.com/jitsu-unikernel/jitsu/internal/sandbox"
)

const (
	guestIP   = "10.213.0.5"
	host      = "blog.example.test"
	serverIP  = "192.168.77.1" // the server's "public" address, on the veth
	clientIP  = "192.168.77.2"
	haproxyAt = serverIP + ":8443"
)

type options struct {
	rounds, gets, concurrency int
	size                      int64
	rpsTime                   time.Duration
	bin, domainType           string
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds")
	flag.Int64Var(&o.size, "size", 100<<20, "bytes of the large download")
	flag.IntVar(&o.gets, "gets", 100, "sequential small GETs per case and round (latency)")
	flag.IntVar(&o.concurrency, "concurrency", 8, "clients of the requests-per-second phase")
	flag.DurationVar(&o.rpsTime, "rps-time", 5*time.Second, "duration of the requests-per-second phase")
	flag.StringVar(&o.bin, "jitsu", "bin/jitsu", "the jitsu binary")
	flag.StringVar(&o.domainType, "domain-type", "qemu", "libvirt domain type: qemu (TCG) or kvm")
	flag.Parse()
	benchkit.Main("bench-frontdoor", func(ctx context.Context) error { return run(ctx, o) })
}

// way is one of the three ways in.
type way struct {
	label, addr string
	mbps        []float64       // one per round
	rps         []float64       // one per round
	lat         []time.Duration // every small GET
}

func run(ctx context.Context, o options) (err error) {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("haproxy"); err != nil {
		return fmt.Errorf("haproxy not installed (scripts/install-deps.sh): %w", err)
	}
	img, err := sandbox.FindExampleImage()
	if err != nil {
		return err
	}
	env, err := sandbox.StartLibvirt(ctx, func(f string, a ...any) { log.Printf("env: "+f, a...) })
	if err != nil {
		return fmt.Errorf("start environment: %w", err)
	}
	defer func() { err = errors.Join(err, env.Close()) }()
	dir, removeDir, err := benchkit.WorkDir("fdbench-")
	if err != nil {
		return err
	}
	defer removeDir()
	client, cleanup, err := clientNamespace(ctx, env)
	if err != nil {
		return err
	}
	defer cleanup()
	pool, files, err := writeCert(dir)
	if err != nil {
		return err
	}
	stopJitsu, err := startJitsu(ctx, env, bin, dir, img, o.domainType, files)
	if err != nil {
		return err
	}
	defer stopJitsu()
	stopHAProxy, err := startHAProxy(ctx, env, dir)
	if err != nil {
		return err
	}
	defer stopHAProxy()

	ways := []*way{
		{label: "(a) front door (SNI, splice)", addr: serverIP + ":443"},
		{label: "(b) direct to the guest", addr: guestIP + ":443"},
		{label: "(c) HAProxy TCP, req.ssl_sni", addr: haproxyAt},
	}
	start := time.Now()
	if err := warmUp(ctx, client, pool, ways[0].addr); err != nil {
		return fmt.Errorf("cold fetch through the front door: %w", err)
	}
	log.Printf("cold HTTPS fetch through the front door (boot included): %v", time.Since(start).Round(time.Millisecond))
	for r := 0; r < o.rounds; r++ {
		for i := range ways {
			w := ways[(i+r)%len(ways)] // rotate the order each round
			if err := measure(ctx, client, pool, w, o); err != nil {
				return fmt.Errorf("%s: %w", w.label, err)
			}
			log.Printf("round %d %-30s %8.1f MB/s %8.1f req/s", r+1, w.label, w.mbps[r], w.rps[r])
		}
	}
	report(ways, o)
	return nil
}

// report prints the table.
func report(ways []*way, o options) {
	fmt.Printf("\nfront door benchmark: %d interleaved rounds; client netns -> veth -> server -> bridge -> guest (HTTPS, %s)\n",
		o.rounds, runtime.GOARCH)
	fmt.Printf("%-32s %12s %12s %10s %10s %12s\n", "way in", "download", "new conn", "GET p50", "GET p99", "added p50")
	fmt.Printf("%-32s %12s %12s %10s %10s %12s\n", "", "MB/s", "req/s", "ms", "ms", "ms")
	direct := pct(ways[1].lat, 50)
	for _, w := range ways {
		fmt.Printf("%-32s %12.1f %12.1f %10.2f %10.2f %12.2f\n", w.label, median(w.mbps), median(w.rps),
			msf(pct(w.lat, 50)), msf(pct(w.lat, 99)), msf(pct(w.lat, 50)-direct))
	}
	a, b, c := ways[0], ways[1], ways[2]
	fmt.Printf("\nthroughput (a)/(b) = %.2f (goal >= 0.9), (a)/(c) = %.2f (goal >= 1.0)\n", median(a.mbps)/median(b.mbps), median(a.mbps)/median(c.mbps))
	fmt.Printf("req/s      (a)/(b) = %.2f, (a)/(c) = %.2f (goal >= 1.0)\n", median(a.rps)/median(b.rps), median(a.rps)/median(c.rps))
	fmt.Printf("download %d MB; %d sequential GETs and %s of %d concurrent clients per case and round\n",
		o.size>>20, o.gets, o.rpsTime, o.concurrency)
}

// measure runs one round of one way: the download, the sequential GETs
// and the requests-per-second phase.
func measure(ctx context.Context, cl *clientNS, pool *x509.CertPool, w *way, o options) error {
	hc := cl.httpClient(pool, w.addr)
	start := time.Now()
	n, err := fetch(ctx, hc, fmt.Sprintf("https://%s/.jitsu/bytes?n=%d", host, o.size))
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if n != o.size {
		return fmt.Errorf("download: %d bytes, want %d", n, o.size)
	}
	w.mbps = append(w.mbps, float64(n)/1e6/time.Since(start).Seconds())
	for i := 0; i < o.gets; i++ {
		t := time.Now()
		if _, err := fetch(ctx, hc, "https://"+host+"/"); err != nil {
			return fmt.Errorf("GET %d: %w", i, err)
		}
		w.lat = append(w.lat, time.Since(t))
	}
	var (
		mu    sync.Mutex
		count int
		first error
		wg    sync.WaitGroup
	)
	end := time.Now().Add(o.rpsTime)
	begin := time.Now()
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				_, err := fetch(ctx, hc, "https://"+host+"/")
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					count++
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("requests per second: %w", first)
	}
	w.rps = append(w.rps, float64(count)/time.Since(begin).Seconds())
	return nil
}

// fetch GETs url on a new connection and returns the body's length.
func fetch(ctx context.Context, hc *http.Client, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s", resp.Status)
	}
	return n, err
}

// warmUp fetches through addr until it works (the first fetch boots the
// guest), for up to two minutes.
func warmUp(ctx context.Context, cl *clientNS, pool *x509.CertPool, addr string) error {
	hc := cl.httpClient(pool, addr)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := fetch(ctx, hc, "https://"+host+"/")
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// clientNS is the client's network namespace.
type clientNS struct{ h netns.NsHandle }

// clientNamespace creates the client namespace, linked to the server's by
// a veth pair (192.168.77.2 -> .1), routed to the guests' subnet through
// the server. cleanup deletes it (and the pair).
func clientNamespace(ctx context.Context, env *sandbox.Env) (*clientNS, func(), error) {
	name := fmt.Sprintf("fdb-client-%d", os.Getpid())
	if err := sh(ctx, "ip", "netns", "add", name); err != nil {
		return nil, nil, err
	}
	cleanup := func() { _ = sh(context.Background(), "ip", "netns", "del", name) }
	steps := [][]string{
		{"ip", "-n", env.NS, "link", "add", "fdb0", "type", "veth", "peer", "name", "fdb1", "netns", name},
		{"ip", "-n", env.NS, "addr", "add", serverIP + "/30", "dev", "fdb0"},
		{"ip", "-n", env.NS, "link", "set", "fdb0", "up"},
		{"ip", "-n", name, "addr", "add", clientIP + "/30", "dev", "fdb1"},
		{"ip", "-n", name, "link", "set", "fdb1", "up"},
		{"ip", "-n", name, "link", "set", "lo", "up"},
		{"ip", "-n", name, "route", "add", "default", "via", serverIP},
		{"ip", "netns", "exec", env.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	}
	for _, s := range steps {
		if err := sh(ctx, s[0], s[1:]...); err != nil {
			cleanup()
			return nil, nil, err
		}
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	return &clientNS{h: h}, func() { h.Close(); cleanup() }, nil
}

// dial connects to addr from inside the client namespace.
func (c *clientNS) dial(ctx context.Context, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- result{nil, err}
			return // the locked thread exits with the goroutine
		}
		defer orig.Close()
		if err := netns.Set(c.h); err != nil {
			ch <- result{nil, err}
			return
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.c, r.err
}

// httpClient returns a client whose every request is a new connection
// to addr from the client namespace, TLS checked against pool.
func (c *clientNS) httpClient(pool *x509.CertPool, addr string) *http.Client {
	return &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
		DialContext:        func(ctx context.Context, _, _ string) (net.Conn, error) { return c.dial(ctx, addr) },
		TLSClientConfig:    &tls.Config{RootCAs: pool, ServerName: host},
		DisableKeepAlives:  true,
		DisableCompression: true,
	}}
}

// writeCert writes a self-signed certificate and key for host into dir
// and returns a pool trusting it and the files table for the guest.
func writeCert(dir string) (*x509.CertPool, map[string]string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	files := map[string]string{"tls/cert.pem": filepath.Join(dir, "cert.pem"), "tls/key.pem": filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(files["tls/cert.pem"], pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(files["tls/key.pem"], pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, nil, err
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return pool, files, nil
}

// startJitsu runs jitsu with the front door on serverIP:443 and the
// unikernel "blog" (never idled out); stop ends it.
func startJitsu(ctx context.Context, env *sandbox.Env, bin, dir string, img sandbox.Image, domainType string, files map[string]string) (stop func(), err error) {
	data := sandbox.JitsuConfig{
		ConsoleDir: dir, Socket: filepath.Join(dir, "control.sock"), Image: img, DomainType: domainType,
		Frontdoor: []string{serverIP + ":443"},
		Unikernels: []sandbox.JitsuUnikernel{{Name: "blog", IP: guestIP, IdleTimeout: "0s", Ready: "tcp:443",
			Frontdoor: true, Files: files}},
	}
	conf := filepath.Join(dir, "jitsu.toml")
	if err := data.Write(conf); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "jitsu.log"))
	if err != nil {
		return nil, err
	}
	cmd := env.Command(ctx, bin, "serve", "--config", conf, "--log-json")
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start jitsu: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
		os.Remove("/var/lib/jitsu/seed/blog.seed.tar")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := control.Dial(ctx, data.Socket)
		if err == nil {
			_, err = c.Status(ctx)
			c.Close()
			if err == nil {
				return stop, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return nil, fmt.Errorf("jitsu did not answer on its control socket: %v (log in %s)", err, logf.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// haproxyConf routes by SNI in TCP mode, splicing as the front door does.
const haproxyConf = `global
    maxconn 4000
defaults
    mode tcp
    option splice-auto
    timeout connect 5s
    timeout client 5m
    timeout server 5m
frontend sni
    bind ` + haproxyAt + `
    tcp-request inspect-delay 5s
    tcp-request content accept if { req_ssl_hello_type 1 }
    use_backend blog if { req.ssl_sni -i ` + host + ` }
backend blog
    server guest ` + guestIP + `:443
`

// startHAProxy runs haproxy in the server namespace; stop ends it.
func startHAProxy(ctx context.Context, env *sandbox.Env, dir string) (func(), error) {
	conf := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(conf, []byte(haproxyConf), 0o644); err != nil {
		return nil, err
	}
	cmd := env.Command(ctx, "haproxy", "-db", "-f", conf)
	out, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start haproxy: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		out.Close()
	}
	// Wait until it listens.
	for i := 0; ; i++ {
		var c net.Conn
		err := env.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", haproxyAt, time.Second)
			return err
		})
		if err == nil {
			c.Close()
			return stop, nil
		}
		if i > 100 {
			stop()
			b, _ := os.ReadFile(out.Name())
			return nil, fmt.Errorf("haproxy does not listen on %s: %v\n%s", haproxyAt, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sh(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %v: %s", name, args, err, out)
	}
	return nil
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func msf(d time.Duration) float64 { return float64(d) / 1e6 }
