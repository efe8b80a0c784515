package perurl

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/net/html"
)

// Links maps a site path ("blog/first-post.html") to its page.
type Links map[string]Page

// NewLinks indexes pages by path.
func NewLinks(pages []Page) Links {
	l := make(Links, len(pages))
	for _, p := range pages {
		l[p.Path] = p
	}
	return l
}

// Resolve returns the absolute URL a reference found in the file at
// pagePath must become, and true; or false when the reference is left as
// it is: an absolute URL (http:, mailto:...), a fragment or query of the
// same page, an empty reference, or one to a file that is not in the site.
// Query and fragment are kept.
func (l Links) Resolve(pagePath, ref string) (string, bool) {
	ref = strings.TrimSpace(ref)
	if ref == "" || strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "?") {
		return "", false
	}
	u, err := url.Parse(ref)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" {
		return "", false
	}
	p := u.Path
	if !strings.HasPrefix(p, "/") {
		p = path.Join(path.Dir("/"+pagePath), p)
		if strings.HasSuffix(u.Path, "/") {
			p += "/"
		}
	}
	if strings.HasSuffix(p, "/") {
		p += "index.html"
	}
	target, ok := l[strings.TrimPrefix(path.Clean(p), "/")]
	if !ok {
		return "", false
	}
	out := target.URL()
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	if u.Fragment != "" {
		out += "#" + u.EscapedFragment()
	}
	return out, true
}

// linkAttrs are the attributes whose values are references.
var linkAttrs = map[string]bool{"href": true, "src": true}

// attrRE finds attributes in the raw text of a start tag: name, then
// a double-quoted, single-quoted or bare value.
var attrRE = regexp.MustCompile(`(?is)(\s)([a-z][a-z0-9_:-]*)(\s*=\s*)("[^"]*"|'[^']*'|[^\s"'=<>` + "`" + `]+)`)

// RewriteHTML copies the HTML document src of the file at pagePath,
// replacing every href and src attribute value that Resolve maps, and
// url(...) references inside style attributes and <style> elements.
// Everything else is copied byte for byte. It returns the references left
// alone because their target is not in the site (external URLs and
// fragments are not reported).
func (l Links) RewriteHTML(src []byte, pagePath string) ([]byte, []string, error) {
	var out bytes.Buffer
	var missing []string
	z := html.NewTokenizer(bytes.NewReader(src))
	inStyle := false
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			if z.Err() == io.EOF {
				return out.Bytes(), missing, nil
			}
			return nil, nil, fmt.Errorf("rewrite %s: %w", pagePath, z.Err())
		}
		raw := z.Raw()
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			inStyle = tt == html.StartTagToken && string(name) == "style"
			out.Write(l.rewriteTag(raw, pagePath, &missing))
		case html.EndTagToken:
			inStyle = false
			out.Write(raw)
		case html.TextToken:
			if inStyle {
				css, m := l.RewriteCSS(raw, pagePath)
				missing = append(missing, m...)
				out.Write(css)
			} else {
				out.Write(raw)
			}
		default:
			out.Write(raw)
		}
	}
}

// rewriteTag rewrites the reference attributes in one raw start tag.
func (l Links) rewriteTag(raw []byte, pagePath string, missing *[]string) []byte {
	return attrRE.ReplaceAllFunc(raw, func(m []byte) []byte {
		sub := attrRE.FindSubmatch(m)
		name := strings.ToLower(string(sub[2]))
		val := sub[4]
		quote := ""
		if len(val) > 0 && (val[0] == '"' || val[0] == '\'') {
			quote = string(val[0])
			val = val[1 : len(val)-1]
		}
		ref := html.UnescapeString(string(val))
		var nv string
		switch {
		case linkAttrs[name]:
			u, ok := l.Resolve(pagePath, ref)
			if !ok {
				if isLocal(ref) {
					*missing = append(*missing, ref)
				}
				return m
			}
			nv = html.EscapeString(u)
		case name == "style":
			css, ms := l.RewriteCSS([]byte(ref), pagePath)
			*missing = append(*missing, ms...)
			if string(css) == ref {
				return m
			}
			nv = html.EscapeString(string(css))
		default:
			return m
		}
		if quote == "" {
			quote = `"`
		}
		return []byte(string(sub[1]) + string(sub[2]) + string(sub[3]) + quote + nv + quote)
	})
}

// isLocal says whether ref points inside the site (not a scheme, host or
// fragment).
func isLocal(ref string) bool {
	ref = strings.TrimSpace(ref)
	if ref == "" || strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "?") {
		return false
	}
	u, err := url.Parse(ref)
	return err == nil && u.Scheme == "" && u.Host == "" && u.Opaque == ""
}

// cssURLRE finds url(...) references in CSS.
var cssURLRE = regexp.MustCompile(`(?i)url\(\s*("[^"]*"|'[^']*'|[^)\s]*)\s*\)`)

// RewriteCSS replaces the url(...) references of the stylesheet src of the
// file at pagePath that Resolve maps, and returns those whose target is not
// in the site.
func (l Links) RewriteCSS(src []byte, pagePath string) ([]byte, []string) {
	var missing []string
	out := cssURLRE.ReplaceAllFunc(src, func(m []byte) []byte {
		v := string(cssURLRE.FindSubmatch(m)[1])
		quote := ""
		if len(v) > 0 && (v[0] == '"' || v[0] == '\'') {
			quote = v[:1]
			v = v[1 : len(v)-1]
		}
		u, ok := l.Resolve(pagePath, v)
		if !ok {
			if isLocal(v) && !strings.HasPrefix(v, "data:") {
				missing = append(missing, v)
			}
			return m
		}
		if quote == "" {
			quote = `"`
		}
		return []byte("url(" + quote + u + quote + ")")
	})
	return out, missing
}

// MaxGroup bounds a page's summon group (Group).
const MaxGroup = 8

// Group returns the labels of the pages that the rewritten file content of
// page p refers to and that a browser loads with it: every page of the
// site but HTML documents (which are links to follow, not parts of p) and
// p itself, in path order, at most MaxGroup. jitsu summons them with p
// (the with key), so that a visit boots them in parallel.
func (l Links) Group(content []byte, p Page) []string {
	paths := make([]string, 0, len(l))
	for path := range l {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	var out []string
	for _, path := range paths {
		t := l[path]
		if t.Path == p.Path || isHTML(t.Path) || !bytes.Contains(content, []byte(t.URL())) {
			continue
		}
		if len(out) == MaxGroup {
			break
		}
		out = append(out, t.Label)
	}
	return out
}

// isHTML says whether the file at p is an HTML document.
func isHTML(p string) bool {
	switch strings.ToLower(path.Ext(p)) {
	case ".html", ".htm":
		return true
	}
	return false
}

// Rewrite rewrites the file at pagePath according to its extension: HTML
// documents and stylesheets; any other file is returned unchanged.
func (l Links) Rewrite(src []byte, pagePath string) ([]byte, []string, error) {
	switch strings.ToLower(path.Ext(pagePath)) {
	case ".html", ".htm":
		return l.RewriteHTML(src, pagePath)
	case ".css":
		out, missing := l.RewriteCSS(src, pagePath)
		return out, missing, nil
	}
	return src, nil, nil
}
