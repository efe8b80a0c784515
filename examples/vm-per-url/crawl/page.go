package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
)

// loadPage loads the page at u as a browser would: the page first, then
// every resource it loads (its in-zone links that are not pages:
// stylesheets, images, scripts) in parallel, each with its own DNS query.
// It prints one line per fetch and the page-load time (from the page's DNS
// query to the last byte of the last resource), last as
// "page load: N ms" for scripts, and fails if any fetch failed.
func loadPage(ctx context.Context, res *net.Resolver, u, zone string, timeout time.Duration, out io.Writer) error {
	t0 := time.Now()
	page, body := fetch(ctx, res, u, timeout)
	all := []result{page}
	if page.err == nil && page.status == http.StatusOK {
		subs := resources(links(u, page.contentType, body), zone)
		got := make([]result, len(subs))
		var wg sync.WaitGroup
		for i, s := range subs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], _ = fetch(ctx, res, s, timeout)
			}()
		}
		wg.Wait()
		all = append(all, got...)
	}
	total := time.Since(t0)
	failed := 0
	for i, r := range all {
		printResult(out, i+1, r)
		if r.err != nil || r.status != http.StatusOK {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d fetches of the page failed", failed, len(all))
	}
	fmt.Fprintf(out, "   page load: %.1f ms (%s and %d resources)\n", float64(total.Microseconds())/1000, u, len(all)-1)
	return nil
}

// resources returns the links that a browser loads with the page rather
// than follows: in zone, and not a page (a path ending in /, .html or
// .htm), as the VM-per-URL builder writes the page's summon group.
func resources(ls []string, zone string) []string {
	var out []string
	for _, l := range ls {
		pu, err := url.Parse(l)
		if err != nil || !inZone(l, zone) {
			continue
		}
		p := strings.ToLower(pu.Path)
		if p == "" || strings.HasSuffix(p, "/") {
			continue
		}
		if ext := path.Ext(p); ext == ".html" || ext == ".htm" {
			continue
		}
		out = append(out, l)
	}
	return out
}
