// Package perurl holds the logic of the VM-per-URL experiment
// (examples/vm-per-url): it cuts a static site into one unikernel per file,
// gives each a DNS name and an address, rewrites the links between the files
// to those names, and writes the jitsu configuration serving them.
//
// Naming scheme: a file's DNS label is "p-" followed by its path inside the
// site, lower-cased, with ".html" (or ".htm") dropped, every other run of
// characters outside [a-z0-9] turned into one "-", and leading or trailing
// "-" removed: index.html → p-index, blog/first-post.html → p-blog-first-post,
// style.css → p-style-css. A label longer than 63 characters is cut and ends
// with 8 hex digits of the path's SHA-256; a label already taken gets "-2",
// "-3"... The unikernel is named after its label, and its name is
// LABEL.ZONE (p-about.example.test.). The "p-" prefix keeps the generated
// names apart from hand-made ones such as www or ns1.
//
// Addresses: the files, in path order, take consecutive addresses of the
// network starting at a given offset, skipping the gateway and the
// broadcast address.
//
// URLs: a file is fetched at http://LABEL.ZONE/PATH, except a top-level
// index.html, fetched at http://LABEL.ZONE/. Every image also serves its
// one file at / (see ImageFiles).
package perurl

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/netip"
	"path"
	"sort"
	"strings"
)

// Page is one file of the site and the unikernel that serves it.
type Page struct {
	// Path is the file's slash-separated path inside the site,
	// "blog/first-post.html".
	Path string
	// Label is its DNS label and unikernel name, "p-blog-first-post".
	Label string
	// Host is its DNS name without the final dot,
	// "p-blog-first-post.example.test".
	Host string
	// IP is the unikernel's address.
	IP netip.Addr
	// With are the labels of the pages it loads (stylesheets, images,
	// scripts: see Group), written as its summon group (with = [...]).
	With []string
}

// FQDN returns the page's DNS name with the final dot.
func (p Page) FQDN() string { return p.Host + "." }

// URLPath returns the path the page is linked at: "/" for the top-level
// index.html, "/PATH" otherwise.
func (p Page) URLPath() string {
	if p.Path == "index.html" {
		return "/"
	}
	return "/" + p.Path
}

// URL returns the page's absolute URL, http://HOST/PATH.
func (p Page) URL() string { return "http://" + p.Host + p.URLPath() }

// maxLabel is the longest DNS label.
const maxLabel = 63

// Label returns the DNS label of the file at path p, following the naming
// scheme in the package comment (without the duplicate suffix).
func Label(p string) string {
	s := strings.ToLower(strings.TrimPrefix(path.Clean("/"+p), "/"))
	for _, ext := range []string{".html", ".htm"} {
		if strings.HasSuffix(s, ext) {
			s = strings.TrimSuffix(s, ext)
			break
		}
	}
	var b strings.Builder
	b.WriteString("p-")
	dash := true
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	l := strings.TrimRight(b.String(), "-")
	if l == "p" {
		l = "p-root"
	}
	if len(l) > maxLabel {
		sum := sha256.Sum256([]byte(p))
		h := hex.EncodeToString(sum[:4])
		l = strings.TrimRight(l[:maxLabel-len(h)-1], "-") + "-" + h
	}
	return l
}

// uniqueLabel returns l, or l with the first free "-N" suffix.
func uniqueLabel(l string, taken map[string]bool) string {
	if !taken[l] {
		return l
	}
	for n := 2; ; n++ {
		suffix := fmt.Sprintf("-%d", n)
		base := l
		if len(base)+len(suffix) > maxLabel {
			base = strings.TrimRight(base[:maxLabel-len(suffix)], "-")
		}
		if c := base + suffix; !taken[c] {
			return c
		}
	}
}

// PlanOptions says where the pages' names and addresses come from.
type PlanOptions struct {
	// Zone is the DNS zone the names go in, "example.test." (the final dot
	// is optional).
	Zone string
	// Network is the unikernels' subnet, 10.213.0.0/24.
	Network netip.Prefix
	// Gateway is the host's address in Network; it is never assigned.
	Gateway netip.Addr
	// First is the offset in Network of the first address handed out
	// (10 gives 10.213.0.10); 0 means 2.
	First int
}

// Plan names and numbers the files at paths (slash-separated, relative to
// the site root), in path order.
func Plan(paths []string, o PlanOptions) ([]Page, error) {
	zone := strings.TrimSuffix(strings.ToLower(o.Zone), ".")
	if zone == "" {
		return nil, fmt.Errorf("plan: empty zone")
	}
	if !o.Network.IsValid() || !o.Network.Addr().Is4() {
		return nil, fmt.Errorf("plan: network %v is not an IPv4 prefix", o.Network)
	}
	netw := o.Network.Masked()
	first := o.First
	if first <= 0 {
		first = 2
	}
	sorted := append([]string(nil), paths...)
	sort.Strings(sorted)
	taken := map[string]bool{}
	seenPath := map[string]bool{}
	pages := make([]Page, 0, len(sorted))
	ip := addOffset(netw.Addr(), first)
	for _, p := range sorted {
		clean := strings.TrimPrefix(path.Clean("/"+p), "/")
		if clean == "" || !fs.ValidPath(clean) {
			return nil, fmt.Errorf("plan: bad path %q", p)
		}
		if seenPath[clean] {
			return nil, fmt.Errorf("plan: path %q listed twice", clean)
		}
		seenPath[clean] = true
		for ip == o.Gateway {
			ip = ip.Next()
		}
		if !netw.Contains(ip) || ip == lastAddr(netw) {
			return nil, fmt.Errorf("plan: network %v has no address left for %q (%d files)", netw, clean, len(sorted))
		}
		l := uniqueLabel(Label(clean), taken)
		taken[l] = true
		pages = append(pages, Page{Path: clean, Label: l, Host: l + "." + zone, IP: ip})
		ip = ip.Next()
	}
	return pages, nil
}

// addOffset returns a+n for an IPv4 address.
func addOffset(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// lastAddr returns the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	return addOffset(p.Masked().Addr(), 1<<(32-p.Bits())-1)
}
