package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFrontDoor: two unikernels behind the front door on one address
// (127.0.0.1:80 and :443 in the namespace). "blog" gets a certificate
// and key on its seed-file disk and serves HTTPS: a cold HTTPS fetch is
// routed by SNI, and the client checks the guest's certificate against
// the test CA (TLS is never terminated by jitsu). "www" is fetched cold
// over HTTP, routed by Host. An unknown name gets 421.
func TestFrontDoor(t *testing.T) {
	certPEM, keyPEM, pool := testCert(t, "blog.example.test")
	secrets := t.TempDir() // read by jitsu (root) only
	certFile, keyFile := filepath.Join(secrets, "cert.pem"), filepath.Join(secrets, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, true,
		unikernelConf{Name: "blog", IP: "10.213.0.5", Frontdoor: true,
			Files: map[string]string{"tls/cert.pem": certFile, "tls/key.pem": keyFile}},
		unikernelConf{Name: "www", IP: "10.213.0.6", Frontdoor: true},
	)
	w.data.Frontdoor = []string{"127.0.0.1:80", "127.0.0.1:443"}
	w.writeConf()
	w.startJitsu()
	t.Cleanup(func() { os.Remove("/var/lib/jitsu/seed/blog.seed.tar") })

	if a := w.resolve("blog.example.test"); a != "127.0.0.1" {
		t.Fatalf("blog resolved to %s, want the front door's 127.0.0.1", a)
	}
	dial := func(addr string) func(ctx context.Context, _, _ string) (net.Conn, error) {
		return func(ctx context.Context, _, _ string) (net.Conn, error) { return w.env.DialContext(ctx, "tcp", addr) }
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: dial("127.0.0.1:443"), DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	start := time.Now()
	resp, err := client.Get("https://blog.example.test/")
	if err != nil {
		t.Fatalf("cold HTTPS GET through the front door: %v", netErr(err))
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), page) {
		t.Fatalf("HTTPS GET: %s %q", resp.Status, body)
	}
	if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != "blog.example.test" {
		t.Errorf("guest certificate for %q", cn)
	}
	t.Logf("cold HTTPS fetch through the front door: %v", time.Since(start).Round(time.Millisecond))

	plain := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: dial("127.0.0.1:80"), DisableKeepAlives: true}}
	start = time.Now()
	resp, err = plain.Get("http://www.example.test/")
	if err != nil {
		t.Fatalf("cold HTTP GET through the front door: %v", netErr(err))
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), page) {
		t.Fatalf("HTTP GET: %s %q", resp.Status, body)
	}
	t.Logf("cold HTTP fetch through the front door: %v", time.Since(start).Round(time.Millisecond))

	resp, err = plain.Get("http://nobody.example.test/")
	if err != nil {
		t.Fatalf("GET an unknown name: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("unknown name: %s, want 421", resp.Status)
	}
	for _, u := range []string{"blog", "www"} {
		if n := w.metric("jitsu_frontdoor_connections_total", `unikernel="`+u+`"`); n != 1 {
			t.Errorf("front-door connections of %s = %v, want 1", u, n)
		}
		// A splice counts its bytes when it ends (the guest's FIN may come
		// after the client has read the whole response) or every
		// activity interval: wait for them.
		var n float64
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if n = w.metric("jitsu_frontdoor_sent_bytes_total", `unikernel="`+u+`"`); n >= float64(len(page)) || time.Now().After(deadline) {
				break
			}
		}
		if n < float64(len(page)) {
			t.Errorf("front-door bytes sent by %s = %v after 5 s", u, n)
		}
	}
	if n := w.metric("jitsu_frontdoor_refusals_total", `reason="unknown_name"`); n != 1 {
		t.Errorf("unknown_name refusals = %v, want 1", n)
	}
	st, err := os.Stat("/var/lib/jitsu/seed/blog.seed.tar")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("seed image: %v, mode %v; want 0600", err, st.Mode())
	}
}

// testCert returns a self-signed certificate and key for name, PEM, and a
// pool that trusts it.
func testCert(t *testing.T, name string) ([]byte, []byte, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), pool
}
