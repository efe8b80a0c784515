package frontdoor

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// fakeSummoner answers SummonWait with 127.0.0.1 once the unikernel's
// gate is open (open unless block says otherwise).
type fakeSummoner struct {
	mu      sync.Mutex
	gates   map[string]chan struct{} // closed = ready; absent = ready
	calls   map[string]int
	clients []netip.Addr
	active  atomic.Int64
}

func newFakeSummoner() *fakeSummoner {
	return &fakeSummoner{gates: map[string]chan struct{}{}, calls: map[string]int{}}
}

func (f *fakeSummoner) block(name string) func() {
	ch := make(chan struct{})
	f.mu.Lock()
	f.gates[name] = ch
	f.mu.Unlock()
	return sync.OnceFunc(func() { close(ch) })
}

func (f *fakeSummoner) SummonWait(ctx context.Context, name string, client netip.Addr) (netip.Addr, error) {
	f.mu.Lock()
	f.calls[name]++
	f.clients = append(f.clients, client)
	ch := f.gates[name]
	f.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return netip.Addr{}, fmt.Errorf("wait for %q: %w", name, ctx.Err())
		}
	}
	return netip.MustParseAddr("127.0.0.1"), nil
}

func (f *fakeSummoner) Active(string) { f.active.Add(1) }

func (f *fakeSummoner) callCount(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

// fixture is a running front door with an HTTP listener and a TLS
// listener, each routed to a backend on loopback.
type fixture struct {
	t        testing.TB
	srv      *Server
	sum      *fakeSummoner
	reg      *prometheus.Registry
	httpAddr string // front door, Host routing
	tlsAddr  string // front door, SNI routing
}

// startFixture runs a front door whose HTTP port goes to httpBackend's
// port and TLS port to tlsBackend's; edit tweaks the config first.
func startFixture(t testing.TB, httpBackend, tlsBackend net.Listener, edit func(*Config)) *fixture {
	t.Helper()
	sum := newFakeSummoner()
	reg := prometheus.NewRegistry()
	cfg := Config{
		Listeners: []Listener{
			{Addr: mustAP("127.0.0.1:0"), GuestPort: port(httpBackend)},
			{Addr: mustAP("127.0.0.1:0"), TLS: true, GuestPort: port(tlsBackend)},
		},
		Routes: map[string]Route{
			"www.example.test":  {Unikernel: "www", MaxWait: 5 * time.Second, BootTimeout: time.Second},
			"blog.example.test": {Unikernel: "blog", MaxWait: 5 * time.Second, BootTimeout: time.Second},
			"slow.example.test": {Unikernel: "slow", MaxWait: 5 * time.Second, BootTimeout: time.Second},
		},
		NameTimeout: 2 * time.Second, MaxHeaderBytes: 8192,
		MaxPending: 100, MaxPendingPerSource: 50,
		MaxWaiting: 100, MaxWaitingPerUnikernel: 50,
		MaxConnections: 1000, DialTimeout: 2 * time.Second, ActivityInterval: 50 * time.Millisecond,
		Summoner: sum, Registry: reg,
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	a := srv.Addrs()
	return &fixture{t: t, srv: srv, sum: sum, reg: reg, httpAddr: a[0].String(), tlsAddr: a[1].String()}
}

func port(ln net.Listener) uint16 {
	if ln == nil {
		return 9 // discard: never dialled in the test
	}
	return ln.Addr().(*net.TCPAddr).AddrPort().Port()
}

func (f *fixture) refusals(unikernel, reason string) float64 {
	return testutil.ToFloat64(f.srv.m.refusals.WithLabelValues(unikernel, reason))
}

// httpBackend serves "hello from NAME" for every request, on loopback.
func httpBackend(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s%s", r.Host, r.URL.Path)
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln
}

// selfSigned returns a certificate for names and a pool that trusts it.
func selfSigned(t *testing.T, names ...string) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// tlsBackend is an HTTPS server (the "guest") with a certificate for
// the example names.
func tlsBackend(t *testing.T) (net.Listener, *x509.CertPool) {
	cert, pool := selfSigned(t, "blog.example.test", "www.example.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "tls hello from %s", r.TLS.ServerName)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
	}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	return ln, pool
}

// get sends a raw HTTP/1.1 request for host to addr and returns the
// status line and body.
func get(t *testing.T, addr, host string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response for %s: %v", host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTPHost(t *testing.T) {
	f := startFixture(t, httpBackend(t), nil, nil)
	tests := []struct {
		host   string
		status int
		body   string
	}{
		{"www.example.test", 200, "hello from www.example.test/x"},
		{"WWW.example.test.:80", 200, "hello from WWW.example.test.:80/x"},
		{"nobody.example.test", 421, "no service for this host name here\n"},
	}
	for _, tt := range tests {
		status, body := get(t, f.httpAddr, tt.host)
		if status != tt.status || body != tt.body {
			t.Errorf("Host %s: %d %q, want %d %q", tt.host, status, body, tt.status, tt.body)
		}
	}
	if n := f.sum.callCount("www"); n != 2 {
		t.Errorf("SummonWait(www) called %d times, want 2", n)
	}
	if got := f.refusals("", reasonUnknownName); got != 1 {
		t.Errorf("unknown_name refusals = %v, want 1", got)
	}
	if got := testutil.ToFloat64(f.srv.m.conns.WithLabelValues("www")); got != 2 {
		t.Errorf("connections{www} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(f.srv.m.bytesOut.WithLabelValues("www")); got < 100 {
		t.Errorf("sent bytes{www} = %v, want a response's worth", got)
	}
}

func TestTLSSNI(t *testing.T) {
	be, pool := tlsBackend(t)
	f := startFixture(t, nil, be, nil)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", f.tlsAddr)
		},
		DisableKeepAlives: true,
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://blog.example.test/")
	if err != nil {
		t.Fatalf("GET through the front door: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "tls hello from blog.example.test" {
		t.Errorf("body %q", body)
	}
	if n := f.sum.callCount("blog"); n != 1 {
		t.Errorf("SummonWait(blog) called %d times", n)
	}

	// Unknown name: a TLS unrecognized_name alert.
	c, err := tls.Dial("tcp", f.tlsAddr, &tls.Config{ServerName: "nobody.example.test", RootCAs: pool})
	if err == nil {
		c.Close()
		t.Fatal("handshake for an unknown name succeeded")
	}
	if !strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("handshake error %v, want an unrecognized_name alert", err)
	}
	if got := f.refusals("", reasonUnknownName); got != 1 {
		t.Errorf("unknown_name refusals = %v, want 1", got)
	}
}

// TestTLSSplit sends a real ClientHello in 1-byte TCP segments, and once
// re-fragmented into 1-byte TLS records: the guest gets the exact bytes.
func TestTLSSplit(t *testing.T) {
	got := make(chan []byte, 2)
	be, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	go func() {
		for {
			c, err := be.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				b, _ := io.ReadAll(c)
				got <- b
			}()
		}
	}()
	// 1-byte records take 6 bytes per byte of ClientHello.
	f := startFixture(t, nil, be, func(c *Config) { c.MaxHeaderBytes = 16 << 10 })
	hello := clientHello(t, "blog.example.test")
	for _, in := range [][]byte{hello, fragment(hello, 1)} {
		c, err := net.Dial("tcp", f.tlsAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetNoDelay(true)
		for i := range in {
			if _, err := c.Write(in[i : i+1]); err != nil {
				t.Fatalf("write byte %d: %v", i, err)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		select {
		case b := <-got:
			if string(b) != string(in) {
				t.Errorf("guest got %d bytes, want the %d sent", len(b), len(in))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("guest got nothing")
		}
		c.Close()
	}
}

// TestProxyProtocol: the guest sees the PROXY v2 header with the
// client's address, then the request.
func TestProxyProtocol(t *testing.T) {
	be, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := be.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		got <- b
	}()
	f := startFixture(t, be, nil, func(c *Config) {
		c.Routes["www.example.test"] = Route{Unikernel: "www", ProxyProtocol: true, MaxWait: time.Second, BootTimeout: time.Second}
	})
	c, err := net.Dial("tcp", f.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n"
	io.WriteString(c, req)
	c.(*net.TCPConn).CloseWrite()
	b := <-got
	want := string(proxyHeader(c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort())) + req
	if string(b) != want {
		t.Errorf("guest got %q\nwant %q", b, want)
	}
}

// TestBounds: a silent client, a 64 KiB Host line, a full boot queue and
// a wait past MaxWait are refused and counted, and never stall another name.
func TestBounds(t *testing.T) {
	f := startFixture(t, httpBackend(t), nil, func(c *Config) {
		c.NameTimeout = 300 * time.Millisecond
		c.MaxWaitingPerUnikernel = 2
		c.Routes["slow.example.test"] = Route{Unikernel: "slow", MaxWait: 10 * time.Second, BootTimeout: time.Second}
		c.Routes["late.example.test"] = Route{Unikernel: "late", MaxWait: 200 * time.Millisecond, BootTimeout: time.Second}
	})
	// A client that sends nothing is closed after NameTimeout.
	silent, err := net.Dial("tcp", f.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := silent.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("silent client: read %d, %v; want the connection closed", n, err)
	}
	// 64 KiB Host line: 431 once the cap is reached.
	c, err := net.Dial("tcp", f.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 431 {
		t.Errorf("64 KiB Host line: %v, %v; want 431", resp, err)
	}
	c.Close()

	// Two connections wait for "slow"; a third is refused at once with
	// 503, and "www" is served meanwhile.
	release := f.sum.block("slow")
	defer release()
	type result struct {
		status int
		body   string
	}
	waiting := make(chan result, 2)
	for range 2 {
		go func() {
			s, b := get(t, f.httpAddr, "slow.example.test")
			waiting <- result{s, b}
		}()
	}
	for f.sum.callCount("slow") < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	if s, _ := get(t, f.httpAddr, "slow.example.test"); s != 503 {
		t.Errorf("third waiter: status %d, want 503", s)
	}
	if s, b := get(t, f.httpAddr, "www.example.test"); s != 200 {
		t.Errorf("www while slow boots: %d %q", s, b)
	}
	release()
	for range 2 {
		if r := <-waiting; r.status != 200 || r.body != "hello from slow.example.test/x" {
			t.Errorf("waiter after the boot: %d %q", r.status, r.body)
		}
	}
	// A boot that outlasts the route's MaxWait: 503.
	releaseLate := f.sum.block("late")
	defer releaseLate()
	if s, _ := get(t, f.httpAddr, "late.example.test"); s != 503 {
		t.Errorf("boot timeout: status %d, want 503", s)
	}
	for _, r := range []struct {
		unikernel, reason string
		want              float64
	}{
		{"", reasonTimeout, 1},
		{"", reasonTooLarge, 1},
		{"slow", reasonBootQueueFull, 1},
		{"late", reasonSummonFailed, 1},
	} {
		if got := f.refusals(r.unikernel, r.reason); got != r.want {
			t.Errorf("refusals{%q,%s} = %v, want %v", r.unikernel, r.reason, got, r.want)
		}
	}
}

// TestIdleFlood: 2,000 idle connections from one source take at most
// MaxPendingPerSource slots; a client from another source is served at
// once.
func TestIdleFlood(t *testing.T) {
	f := startFixture(t, httpBackend(t), nil, func(c *Config) {
		c.MaxPendingPerSource = 100
		c.MaxPending = 200
		c.MaxConnections = 5000
		c.NameTimeout = 30 * time.Second
	})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 2000 {
		// A refused connection may be reset before connect returns.
		if c, err := net.Dial("tcp", f.httpAddr); err == nil {
			conns = append(conns, c)
		}
	}
	// The other source: 127.0.0.2 (loopback owns 127/8).
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", f.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("other source during the flood: %v, %v", resp, err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if f.refusals("", reasonOverload) >= 1900 {
			break
		}
	}
	if got := f.refusals("", reasonOverload); got != 1900 {
		t.Errorf("overload refusals = %v, want 1900 (2000 minus the per-source cap)", got)
	}
	f.srv.mu.Lock()
	pending := f.srv.pending
	f.srv.mu.Unlock()
	if pending > 100 {
		t.Errorf("%d connections being read, cap 100", pending)
	}
}

// TestSpliceActivity: a long download through the front door reports
// activity and counts its bytes.
func TestSpliceActivity(t *testing.T) {
	be, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	const size = 32 << 20
	go func() {
		c, err := be.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		http.ReadRequest(br)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
			if sent%(8<<20) == 0 {
				time.Sleep(60 * time.Millisecond) // spans several activity intervals
			}
		}
	}()
	f := startFixture(t, be, nil, nil)
	status, body := get(t, f.httpAddr, "www.example.test")
	if status != 200 || len(body) != size {
		t.Fatalf("download: %d, %d bytes", status, len(body))
	}
	if n := f.sum.active.Load(); n < 2 {
		t.Errorf("Active called %d times during a %d-byte download, want several", n, size)
	}
	if got := testutil.ToFloat64(f.srv.m.bytesOut.WithLabelValues("www")); got < size {
		t.Errorf("sent bytes = %v, want at least %d", got, size)
	}
}

func TestConfigCheck(t *testing.T) {
	_, err := New(Config{})
	if err == nil || !strings.Contains(err.Error(), "no listeners") || !strings.Contains(err.Error(), "no Summoner") {
		t.Errorf("New(empty) = %v", err)
	}
}

// TestRunListenError: Run reports an address it cannot bind.
func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).AddrPort()
	srv, err := New(Config{
		Listeners: []Listener{{Addr: taken, GuestPort: 80}}, NameTimeout: time.Second, MaxHeaderBytes: 4096,
		MaxPending: 1, MaxPendingPerSource: 1, MaxWaiting: 1, MaxWaitingPerUnikernel: 1, MaxConnections: 1,
		DialTimeout: time.Second, ActivityInterval: time.Second, Summoner: newFakeSummoner(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Run(context.Background()); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Run on a taken address = %v", err)
	}
}

// TestDialRetry: a ready guest that opens the port a moment later is
// retried until it accepts; one that never does is refused at the boot
// timeout.
func TestDialRetry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused until it listens again
	f := startFixture(t, ln, nil, func(c *Config) {
		c.Routes["late.example.test"] = Route{Unikernel: "late", MaxWait: 300 * time.Millisecond, BootTimeout: 300 * time.Millisecond}
	})
	if s, _ := get(t, f.httpAddr, "late.example.test"); s != 503 {
		t.Errorf("guest that never listens: %d, want 503", s)
	}
	if got := f.refusals("late", reasonDialFailed); got != 1 {
		t.Errorf("dial_failed refusals = %v, want 1", got)
	}
	opened := make(chan struct{})
	go func() {
		time.Sleep(150 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen again on %s: %v", addr, err)
			close(opened)
			return
		}
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "late") })}
		t.Cleanup(func() { hs.Close() })
		close(opened)
		hs.Serve(ln)
	}()
	if s, b := get(t, f.httpAddr, "www.example.test"); s != 200 || b != "late" {
		t.Errorf("guest that listens 150ms late: %d %q", s, b)
	}
	<-opened
}

// TestQueuedBoot: a boot that waits in the summoner's start queue longer
// than its boot timeout (and the front door's old bound, the create
// deadline plus the boot timeout) is still in progress: the front door waits for it, up to the route's
// MaxWait, and gets the connection once it is ready, retrying a port the
// guest opens a moment after ready (the retries count from ready, not
// from the summon).
func TestQueuedBoot(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused until the guest listens
	const bootTimeout, queued = 500 * time.Millisecond, time.Second
	f := startFixture(t, ln, nil, func(c *Config) {
		c.Routes["queued.example.test"] = Route{Unikernel: "queued", MaxWait: 20 * time.Second, BootTimeout: bootTimeout}
	})
	release := f.sum.block("queued")
	defer release()
	opened := make(chan struct{})
	go func() {
		defer close(opened)
		time.Sleep(queued) // queued, then ready
		release()
		time.Sleep(50 * time.Millisecond) // the guest opens the port a moment later
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen again on %s: %v", addr, err)
			return
		}
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "queued") })}
		t.Cleanup(func() { hs.Close() })
		go hs.Serve(ln)
	}()
	if s, b := get(t, f.httpAddr, "queued.example.test"); s != 200 || b != "queued" {
		t.Errorf("boot queued %v: %d %q, want 200 from the guest", queued, s, b)
	}
	<-opened
	if got := f.refusals("queued", reasonSummonFailed) + f.refusals("queued", reasonDialFailed); got != 0 {
		t.Errorf("%v refusals of the queued boot's connection", got)
	}
}
