// Command client is the demo's client: it asks a DNS server for a name's
// address, then GETs http://NAME/ (or https://NAME/ with -https, checking
// the certificate against -ca) from that address at once, as a browser
// would, and stamps each event with its own clock at the moment it
// happens: query sent, answer received, connect started, TCP connected,
// TLS handshake, first byte of the page, page received. The demo merges
// these stamps with jitsu's log into one timeline (scripts/demo/timeline),
// so every client line follows its cause.
//
//	client -dns 10.214.0.1:53 -name www.example.test [-https -ca ca.pem] [-out page.html] [-events FILE]
//
// It prints a summary to stdout and, with -events, writes the events to
// FILE as UNIXNANO=LABEL lines (timeline's -event syntax).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// event is one stamped client event.
type event struct {
	at    time.Time
	label string
}

func main() {
	server := flag.String("dns", "", "DNS server host:port")
	name := flag.String("name", "", "name to query and fetch")
	out := flag.String("out", "", "write the page here (default: discard)")
	events := flag.String("events", "", "write the events here as UNIXNANO=LABEL lines")
	timeout := flag.Duration("timeout", 60*time.Second, "give up after this long")
	https := flag.Bool("https", false, "GET https://NAME/ on port 443 (the certificate checked against -ca)")
	caFile := flag.String("ca", "", "with -https: PEM file of the CA the server's certificate must chain to")
	flag.Parse()
	if *server == "" || *name == "" || (*https && *caFile == "") {
		fmt.Fprintln(os.Stderr, "usage: client -dns HOST:PORT -name NAME [-https -ca CA.pem] [-out FILE] [-events FILE]")
		os.Exit(2)
	}
	var roots *x509.CertPool
	if *https {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			os.Exit(1)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			fmt.Fprintf(os.Stderr, "client: no certificate in %s\n", *caFile)
			os.Exit(1)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	evs, err := fetch(ctx, *server, strings.TrimSuffix(*name, "."), *out, roots)
	if werr := writeEvents(*events, evs); werr != nil {
		err = errors.Join(err, werr)
	}
	if len(evs) > 0 {
		for _, e := range evs {
			fmt.Printf("%8.1f ms  %s\n", float64(e.at.Sub(evs[0].at))/float64(time.Millisecond), e.label)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

// fetch does the query and the GET (over TLS checked against roots unless
// it is nil), returning the events so far also on error.
func fetch(ctx context.Context, server, name, out string, roots *x509.CertPool) ([]event, error) {
	var evs []event
	stamp := func(format string, args ...any) {
		evs = append(evs, event{time.Now(), fmt.Sprintf(format, args...)})
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	stamp("DNS query for %s sent", name)
	resp, _, err := (&dns.Client{Timeout: 10 * time.Second}).ExchangeContext(ctx, m, server)
	if err != nil {
		return evs, fmt.Errorf("query %s: %w", name, err)
	}
	var addr net.IP
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			addr = a.A
			break
		}
	}
	if addr == nil {
		return evs, fmt.Errorf("no A record for %s: %s", name, dns.RcodeToString[resp.Rcode])
	}
	stamp("DNS answer %s (TTL %ds)", addr, resp.Answer[0].Header().Ttl)

	scheme, port := "http", "80"
	if roots != nil {
		scheme, port = "https", "443"
	}
	trace := &httptrace.ClientTrace{
		ConnectStart:         func(_, _ string) { stamp("TCP connect to %s:%s starts (SYN sent)", addr, port) },
		ConnectDone:          func(_, _ string, err error) { connectDone(stamp, err) },
		TLSHandshakeStart:    func() { stamp("TLS ClientHello sent (SNI %s)", name) },
		TLSHandshakeDone:     func(cs tls.ConnectionState, err error) { tlsDone(stamp, cs, err) },
		GotFirstResponseByte: func() { stamp("first byte of the page") },
	}
	url := scheme + "://" + name + "/"
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
	if err != nil {
		return evs, err
	}
	// Connect to the address just resolved, as a browser would: the Host
	// header stays the name.
	dialer := &net.Dialer{}
	tr := &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, net.JoinHostPort(addr.String(), port))
		},
	}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return evs, fmt.Errorf("GET %s: %w", url, err)
	}
	defer res.Body.Close()
	w := io.Discard
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return evs, err
		}
		defer f.Close()
		w = f
	}
	n, err := io.Copy(w, res.Body)
	if err != nil {
		return evs, fmt.Errorf("read the page: %w", err)
	}
	stamp("page received (HTTP %d, %d bytes)", res.StatusCode, n)
	if res.StatusCode != http.StatusOK {
		return evs, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return evs, nil
}

func connectDone(stamp func(string, ...any), err error) {
	if err != nil {
		stamp("TCP connect failed: %v", err)
		return
	}
	stamp("TCP connected (SYN-ACK received)")
}

func tlsDone(stamp func(string, ...any), cs tls.ConnectionState, err error) {
	if err != nil {
		stamp("TLS handshake failed: %v", err)
		return
	}
	subject := ""
	if len(cs.PeerCertificates) > 0 {
		subject = cs.PeerCertificates[0].Subject.CommonName
	}
	stamp("TLS handshake done (%s, certificate %q checked against the demo CA)", tls.VersionName(cs.Version), subject)
}

// writeEvents writes evs to path as UNIXNANO=LABEL lines; "" writes none.
func writeEvents(path string, evs []event) error {
	if path == "" {
		return nil
	}
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%d=%s\n", e.at.UnixNano(), e.label)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write events: %w", err)
	}
	return nil
}
