// Command crawl walks the VM-per-URL site from its front page, following
// every link (href, src and CSS url()) to a name inside -zone, resolving
// the names through jitsu's DNS server (-dns) and fetching each URL once,
// one at a time. For every URL it prints which VM answered (the image's
// X-Jitsu-Name header, else the name's first label), its address, and how
// long the DNS answer, the TCP connection and the first byte took from the
// DNS query: each first fetch of a URL is a cold boot of its VM.
//
// With -page it loads only the start page as a browser would (the page,
// then its stylesheets and images in parallel) and prints the page-load
// time.
//
//	crawl -start http://p-index.example.test/ -dns 10.214.0.1:53 -zone example.test [-page]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/html"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "crawl:", err)
		os.Exit(1)
	}
}

// result is one fetched URL.
type result struct {
	url                     string
	vm                      string
	ip                      netip.Addr
	dns, connect, firstByte time.Duration
	total                   time.Duration
	status                  int
	contentType             string
	size                    int
	err                     error
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fl := flag.NewFlagSet("crawl", flag.ContinueOnError)
	start := fl.String("start", "http://p-index.example.test/", "first URL")
	dnsAddr := fl.String("dns", "10.214.0.1:53", "DNS server (jitsu) as ip:port")
	zone := fl.String("zone", "example.test", "follow only links to names in this zone")
	timeout := fl.Duration("timeout", 60*time.Second, "time limit per URL (DNS to last byte)")
	max := fl.Int("max", 100, "fetch at most this many URLs")
	page := fl.Bool("page", false, "load only -start as a browser would (the page, then its stylesheets and images in parallel) and print the page-load time")
	if err := fl.Parse(args); err != nil {
		return err
	}
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, *dnsAddr)
	}}
	z := strings.ToLower(strings.TrimSuffix(*zone, "."))
	if *page {
		fmt.Fprintf(out, "   %-3s %-62s %-20s %-12s %9s %10s %11s  %s\n", "#", "URL", "VM", "ADDRESS", "DNS", "CONNECT", "FIRST BYTE", "RESPONSE")
		return loadPage(ctx, res, *start, z, *timeout, out)
	}
	queue := []string{*start}
	seen := map[string]bool{*start: true}
	var results []result
	fmt.Fprintf(out, "   %-3s %-62s %-20s %-12s %9s %10s %11s  %s\n", "#", "URL", "VM", "ADDRESS", "DNS", "CONNECT", "FIRST BYTE", "RESPONSE")
	for len(queue) > 0 && len(results) < *max {
		u := queue[0]
		queue = queue[1:]
		r, body := fetch(ctx, res, u, *timeout)
		results = append(results, r)
		printResult(out, len(results), r)
		if r.err != nil || r.status != http.StatusOK {
			continue
		}
		for _, l := range links(u, r.contentType, body) {
			if !seen[l] && inZone(l, z) {
				seen[l] = true
				queue = append(queue, l)
			}
		}
	}
	return summary(out, results)
}

// fetch resolves u's host through res, then GETs it from that address.
func fetch(ctx context.Context, res *net.Resolver, u string, timeout time.Duration) (result, []byte) {
	r := result{url: u}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pu, err := url.Parse(u)
	if err != nil {
		r.err = fmt.Errorf("parse %q: %w", u, err)
		return r, nil
	}
	host := pu.Hostname()
	r.vm = strings.SplitN(host, ".", 2)[0]
	t0 := time.Now()
	addrs, err := res.LookupNetIP(ctx, "ip4", host)
	r.dns = time.Since(t0)
	if err != nil || len(addrs) == 0 {
		r.err = fmt.Errorf("resolve %s: %v", host, err)
		return r, nil
	}
	r.ip = addrs[0].Unmap()
	port := pu.Port()
	if port == "" {
		port = "80"
	}
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, net.JoinHostPort(r.ip.String(), port))
		},
	}
	defer tr.CloseIdleConnections()
	trace := &httptrace.ClientTrace{
		ConnectDone:          func(string, string, error) { r.connect = time.Since(t0) },
		GotFirstResponseByte: func() { r.firstByte = time.Since(t0) },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, u, nil)
	if err != nil {
		r.err = fmt.Errorf("request %s: %w", u, err)
		return r, nil
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		r.err = fmt.Errorf("get %s: %w", u, err)
		r.total = time.Since(t0)
		return r, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	r.total = time.Since(t0)
	if err != nil {
		r.err = fmt.Errorf("read %s: %w", u, err)
	}
	r.status, r.size = resp.StatusCode, len(body)
	r.contentType = resp.Header.Get("Content-Type")
	if n := resp.Header.Get("X-Jitsu-Name"); n != "" {
		r.vm = n
	}
	return r, body
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

func printResult(out io.Writer, n int, r result) {
	resp := fmt.Sprintf("%d %s, %d B", r.status, strings.SplitN(r.contentType, ";", 2)[0], r.size)
	if r.err != nil {
		resp = "ERROR " + r.err.Error()
	}
	ip := "-"
	if r.ip.IsValid() {
		ip = r.ip.String()
	}
	fmt.Fprintf(out, "   %-3d %-62s %-20s %-12s %9s %10s %11s  %s\n", n, r.url, r.vm, ip, ms(r.dns), ms(r.connect), ms(r.firstByte), resp)
}

// summary prints the first-byte times and fails when a URL failed.
func summary(out io.Writer, rs []result) error {
	var fb []time.Duration
	failed := 0
	vms := map[string]bool{}
	for _, r := range rs {
		if r.err != nil || r.status != http.StatusOK {
			failed++
			continue
		}
		fb = append(fb, r.firstByte)
		vms[r.vm] = true
	}
	fmt.Fprintf(out, "\n   %d URLs fetched from %d VMs, %d failed", len(rs), len(vms), failed)
	if len(fb) > 0 {
		sort.Slice(fb, func(i, j int) bool { return fb[i] < fb[j] })
		fmt.Fprintf(out, "; time from DNS query to first byte: min %s, median %s, max %s", ms(fb[0]), ms(fb[len(fb)/2]), ms(fb[len(fb)-1]))
	}
	fmt.Fprintln(out)
	if failed > 0 {
		return fmt.Errorf("%d of %d URLs failed", failed, len(rs))
	}
	if len(rs) == 0 {
		return errors.New("nothing fetched")
	}
	return nil
}

// cssURL finds url(...) references in CSS.
var cssURL = regexp.MustCompile(`(?i)url\(\s*["']?([^"')\s]+)["']?\s*\)`)

// links returns the absolute URLs a document at base refers to (href and
// src attributes of HTML, url() in CSS and style), in document order,
// without fragments and without duplicates.
func links(base, contentType string, body []byte) []string {
	b, err := url.Parse(base)
	if err != nil {
		return nil
	}
	var refs []string
	ct := strings.ToLower(contentType)
	switch {
	case strings.Contains(ct, "html"):
		z := html.NewTokenizer(bytes.NewReader(body))
		for {
			tt := z.Next()
			if tt == html.ErrorToken {
				break
			}
			if tt == html.TextToken {
				for _, m := range cssURL.FindAllSubmatch(z.Text(), -1) {
					refs = append(refs, string(m[1]))
				}
				continue
			}
			if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
				continue
			}
			for {
				k, v, more := z.TagAttr()
				switch string(k) {
				case "href", "src":
					refs = append(refs, string(v))
				case "style":
					for _, m := range cssURL.FindAllStringSubmatch(string(v), -1) {
						refs = append(refs, m[1])
					}
				}
				if !more {
					break
				}
			}
		}
	case strings.Contains(ct, "css"):
		for _, m := range cssURL.FindAllSubmatch(body, -1) {
			refs = append(refs, string(m[1]))
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, r := range refs {
		if r = strings.TrimSpace(r); r == "" || strings.HasPrefix(r, "#") {
			continue // the document itself
		}
		u, err := b.Parse(r)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			continue
		}
		u.Fragment, u.RawFragment = "", ""
		if s := u.String(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// inZone says whether the URL's host is zone or a name under it.
func inZone(u, zone string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := strings.ToLower(strings.TrimSuffix(pu.Hostname(), "."))
	return h == zone || strings.HasSuffix(h, "."+zone)
}
