package perurl

import (
	"bytes"
	"io/fs"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/config"
)

func TestLabel(t *testing.T) {
	long := strings.Repeat("a", 80) + ".html"
	tests := []struct{ path, want string }{
		{"index.html", "p-index"},
		{"about.html", "p-about"},
		{"blog/first-post.html", "p-blog-first-post"},
		{"style.css", "p-style-css"},
		{"img/Logo.SVG", "p-img-logo-svg"},
		{"a__b..c.htm", "p-a-b-c"},
		{"_x_.html", "p-x"},
		{".html", "p-root"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := Label(tt.path); got != tt.want {
				t.Errorf("Label(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
	t.Run("long", func(t *testing.T) {
		got := Label(long)
		if len(got) > 63 || !strings.HasPrefix(got, "p-aaaa") {
			t.Errorf("Label(long) = %q (%d bytes), want a p-aaa... label of at most 63", got, len(got))
		}
		if other := Label(strings.Repeat("a", 81) + ".html"); other == got {
			t.Errorf("two long paths share the label %q", got)
		}
	})
}

func TestPlan(t *testing.T) {
	opts := PlanOptions{Zone: "Example.Test.", Network: netip.MustParsePrefix("10.213.0.0/24"), Gateway: netip.MustParseAddr("10.213.0.1"), First: 10}
	tests := []struct {
		name    string
		paths   []string
		opts    PlanOptions
		want    []string // "path label host ip"
		wantErr string
	}{
		{
			name:  "sorted names and consecutive addresses",
			paths: []string{"style.css", "index.html", "blog/first-post.html"},
			opts:  opts,
			want: []string{
				"blog/first-post.html p-blog-first-post p-blog-first-post.example.test 10.213.0.10",
				"index.html p-index p-index.example.test 10.213.0.11",
				"style.css p-style-css p-style-css.example.test 10.213.0.12",
			},
		},
		{
			name:  "colliding labels get suffixes",
			paths: []string{"a.html", "a.htm", "A.html"},
			opts:  opts,
			want: []string{
				"A.html p-a p-a.example.test 10.213.0.10",
				"a.htm p-a-2 p-a-2.example.test 10.213.0.11",
				"a.html p-a-3 p-a-3.example.test 10.213.0.12",
			},
		},
		{
			name:  "gateway skipped",
			paths: []string{"x.html", "y.html"},
			opts:  PlanOptions{Zone: "z.test", Network: netip.MustParsePrefix("10.0.0.0/29"), Gateway: netip.MustParseAddr("10.0.0.3"), First: 2},
			want: []string{
				"x.html p-x p-x.z.test 10.0.0.2",
				"y.html p-y p-y.z.test 10.0.0.4",
			},
		},
		{
			name:    "network too small",
			paths:   []string{"a", "b", "c"},
			opts:    PlanOptions{Zone: "z.test", Network: netip.MustParsePrefix("10.0.0.0/30"), Gateway: netip.MustParseAddr("10.0.0.1")},
			wantErr: "no address left",
		},
		{name: "duplicate path", paths: []string{"a.html", "./a.html"}, opts: opts, wantErr: "listed twice"},
		{name: "no zone", paths: []string{"a.html"}, opts: PlanOptions{Network: opts.Network}, wantErr: "empty zone"},
		{name: "IPv6 network", paths: []string{"a.html"}, opts: PlanOptions{Zone: "z", Network: netip.MustParsePrefix("fd00::/64")}, wantErr: "not an IPv4 prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pages, err := Plan(tt.paths, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Plan error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			var got []string
			for _, p := range pages {
				got = append(got, strings.Join([]string{p.Path, p.Label, p.Host, p.IP.String()}, " "))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Plan =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func testLinks(t *testing.T) Links {
	t.Helper()
	pages, err := Plan([]string{"index.html", "about.html", "blog/first-post.html", "blog/index.html", "style.css", "logo.svg"},
		PlanOptions{Zone: "example.test.", Network: netip.MustParsePrefix("10.213.0.0/24"), Gateway: netip.MustParseAddr("10.213.0.1"), First: 10})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	return NewLinks(pages)
}

func TestResolve(t *testing.T) {
	l := testLinks(t)
	tests := []struct {
		page, ref, want string // want "" = left alone
	}{
		{"index.html", "about.html", "http://p-about.example.test/about.html"},
		{"index.html", "./about.html", "http://p-about.example.test/about.html"},
		{"index.html", "/", "http://p-index.example.test/"},
		{"index.html", "index.html", "http://p-index.example.test/"},
		{"blog/first-post.html", "../style.css", "http://p-style-css.example.test/style.css"},
		{"blog/first-post.html", "/logo.svg", "http://p-logo-svg.example.test/logo.svg"},
		{"blog/first-post.html", "./", "http://p-blog-index.example.test/blog/index.html"},
		{"blog/first-post.html", "../blog/", "http://p-blog-index.example.test/blog/index.html"},
		{"about.html", "blog/first-post.html#part-2", "http://p-blog-first-post.example.test/blog/first-post.html#part-2"},
		{"about.html", "about.html?x=1", "http://p-about.example.test/about.html?x=1"},
		{"about.html", "../../about.html", "http://p-about.example.test/about.html"},
		{"about.html", "#top", ""},
		{"about.html", "", ""},
		{"about.html", "https://example.org/about.html", ""},
		{"about.html", "//cdn.example.org/x.css", ""},
		{"about.html", "mailto:me@example.test", ""},
		{"about.html", "missing.html", ""},
	}
	for _, tt := range tests {
		t.Run(tt.page+" "+tt.ref, func(t *testing.T) {
			got, ok := l.Resolve(tt.page, tt.ref)
			if ok != (tt.want != "") || got != tt.want {
				t.Errorf("Resolve(%q, %q) = %q, %v; want %q", tt.page, tt.ref, got, ok, tt.want)
			}
		})
	}
}

func TestRewriteHTML(t *testing.T) {
	l := testLinks(t)
	tests := []struct {
		name, page, in, want string
		missing              []string
	}{
		{
			name: "href and src, quotes kept",
			page: "index.html",
			in:   `<a href="about.html">A</a><img src='logo.svg' alt="x">`,
			want: `<a href="http://p-about.example.test/about.html">A</a><img src='http://p-logo-svg.example.test/logo.svg' alt="x">`,
		},
		{
			name: "bare value gets quotes, other attributes and case untouched",
			page: "blog/first-post.html",
			in:   `<LINK REL=stylesheet HREF=../style.css><a class=x href="#top">t</a>`,
			want: `<LINK REL=stylesheet HREF="http://p-style-css.example.test/style.css"><a class=x href="#top">t</a>`,
		},
		{
			name: "text, comments and attribute look-alikes untouched",
			page: "index.html",
			in:   "<!-- <a href=\"about.html\"> -->\n<p title=\"see href=about.html\">href=\"about.html\"</p>",
			want: "<!-- <a href=\"about.html\"> -->\n<p title=\"see href=about.html\">href=\"about.html\"</p>",
		},
		{
			name: "style attribute and element",
			page: "index.html",
			in:   `<div style="background: url(logo.svg)"></div><style>h1 { background: url('/logo.svg') }</style>`,
			want: `<div style="background: url(&#34;http://p-logo-svg.example.test/logo.svg&#34;)"></div><style>h1 { background: url('http://p-logo-svg.example.test/logo.svg') }</style>`,
		},
		{
			name:    "missing local targets reported, external ones not",
			page:    "index.html",
			in:      `<a href="nope.html">x</a><a href="https://example.org/">y</a><img src="gone.png">`,
			want:    `<a href="nope.html">x</a><a href="https://example.org/">y</a><img src="gone.png">`,
			missing: []string{"nope.html", "gone.png"},
		},
		{
			name: "entities in values decoded before resolving",
			page: "index.html",
			in:   `<a href="about.html?a=1&amp;b=2">x</a>`,
			want: `<a href="http://p-about.example.test/about.html?a=1&amp;b=2">x</a>`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, missing, err := l.RewriteHTML([]byte(tt.in), tt.page)
			if err != nil {
				t.Fatalf("RewriteHTML: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("RewriteHTML =\n%s\nwant\n%s", got, tt.want)
			}
			if strings.Join(missing, ",") != strings.Join(tt.missing, ",") {
				t.Errorf("missing = %q, want %q", missing, tt.missing)
			}
		})
	}
}

func TestRewriteCSS(t *testing.T) {
	l := testLinks(t)
	tests := []struct{ name, page, in, want string }{
		{"bare", "style.css", `a { background: url(logo.svg) }`, `a { background: url("http://p-logo-svg.example.test/logo.svg") }`},
		{"quoted with spaces", "style.css", `a { background: URL( 'logo.svg' ) }`, `a { background: url('http://p-logo-svg.example.test/logo.svg') }`},
		{"data and external kept", "style.css", `a { b: url(data:image/png;base64,AAAA); c: url(https://x.test/y.png) }`, `a { b: url(data:image/png;base64,AAAA); c: url(https://x.test/y.png) }`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := l.RewriteCSS([]byte(tt.in), tt.page)
			if string(got) != tt.want {
				t.Errorf("RewriteCSS =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestWriteConfig(t *testing.T) {
	pages, err := Plan([]string{"index.html", "about.html", "style.css"},
		PlanOptions{Zone: "example.test.", Network: netip.MustParsePrefix("10.213.0.0/24"), Gateway: netip.MustParseAddr("10.213.0.1"), First: 10})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	initrd := func(p Page) string { return "/var/lib/jitsu/images/vm-per-url/" + ImageName(p) }
	base := ConfigOptions{Zone: "example.test", Gateway: netip.MustParsePrefix("10.213.0.1/24"), Kernel: "/var/lib/jitsu/images/example/bzImage", Initrd: initrd}
	tests := []struct {
		name    string
		opts    func(ConfigOptions) ConfigOptions
		check   func(t *testing.T, c *config.Config)
		wantErr string
	}{
		{
			name: "defaults",
			opts: func(o ConfigOptions) ConfigOptions { return o },
			check: func(t *testing.T, c *config.Config) {
				if got := strings.Join(c.DNS.Listen, ","); got != "127.0.0.1:5353" {
					t.Errorf("listen = %q", got)
				}
				if c.Hypervisor.DomainType != "qemu" || c.Network.Bridge != "br-jitsu" {
					t.Errorf("domain type %q, bridge %q", c.Hypervisor.DomainType, c.Network.Bridge)
				}
				if len(c.Zones) != 1 || c.Zones[0].Origin != "example.test." {
					t.Errorf("zones = %+v", c.Zones)
				}
				if len(c.Unikernels) != len(pages) {
					t.Fatalf("%d unikernels, want %d", len(c.Unikernels), len(pages))
				}
				for i, p := range pages {
					u := c.Unikernels[i]
					if u.Name != p.Label || strings.Join(u.DNS, ",") != p.FQDN() || u.IP != p.IP || u.Initrd != initrd(p) {
						t.Errorf("unikernel %d = %s %v %s %s; want %s %s %s %s", i, u.Name, u.DNS, u.IP, u.Initrd, p.Label, p.FQDN(), p.IP, initrd(p))
					}
					if u.IdleTimeout != 30*time.Second || u.Memory != 64<<20 || u.StopMode != "destroy" {
						t.Errorf("unikernel %s: idle %v memory %d stop %s", u.Name, u.IdleTimeout, u.Memory, u.StopMode)
					}
					if want := "jitsu.name=" + p.Label; !strings.Contains(u.Cmdline, want) || !strings.Contains(u.Cmdline, "ip="+p.IP.String()+"::10.213.0.1:255.255.255.0") {
						t.Errorf("unikernel %s cmdline %q lacks %q or its ip=", u.Name, u.Cmdline, want)
					}
				}
			},
		},
		{
			name: "everything set",
			opts: func(o ConfigOptions) ConfigOptions {
				o.Listen = []string{"127.0.0.1:5353", "10.214.0.1:53"}
				o.Bridge, o.DomainType, o.Memory = "br-x", "kvm", "32MiB"
				o.IdleTimeout = 15 * time.Second
				o.ControlSocket = "/run/x/control.sock"
				return o
			},
			check: func(t *testing.T, c *config.Config) {
				if got := strings.Join(c.DNS.Listen, ","); got != "127.0.0.1:5353,10.214.0.1:53" {
					t.Errorf("listen = %q", got)
				}
				if c.Hypervisor.DomainType != "kvm" || c.Network.Bridge != "br-x" || c.Control.Socket != "/run/x/control.sock" {
					t.Errorf("domain type %q, bridge %q, socket %q", c.Hypervisor.DomainType, c.Network.Bridge, c.Control.Socket)
				}
				for _, u := range c.Unikernels {
					if u.IdleTimeout != 15*time.Second || u.Memory != 32<<20 {
						t.Errorf("unikernel %s: idle %v memory %d", u.Name, u.IdleTimeout, u.Memory)
					}
				}
			},
		},
		{name: "no kernel", opts: func(o ConfigOptions) ConfigOptions { o.Kernel = ""; return o }, wantErr: "no kernel"},
		{name: "no zone", opts: func(o ConfigOptions) ConfigOptions { o.Zone = ""; return o }, wantErr: "no zone"},
		{name: "no gateway", opts: func(o ConfigOptions) ConfigOptions { o.Gateway = netip.Prefix{}; return o }, wantErr: "no gateway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := WriteConfig(&b, tt.opts(base), pages)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("WriteConfig error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("WriteConfig: %v", err)
			}
			c, err := config.Parse("generated.toml", b.Bytes())
			if err != nil {
				t.Fatalf("generated config does not validate: %v\n%s", err, b.String())
			}
			tt.check(t, c)
		})
	}
}

func TestTomlString(t *testing.T) {
	tests := []struct{ in, want string }{
		{`plain`, `"plain"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"tab\tnl\n\x01", `"tab\tnl\n\u0001"`},
	}
	for _, tt := range tests {
		if got := tomlString(tt.in); got != tt.want {
			t.Errorf("tomlString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestImageFiles(t *testing.T) {
	tests := []struct {
		path      string
		wantIndex bool
	}{
		{"index.html", false},
		{"blog/first-post.html", true},
		{"style.css", true},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			fsys := ImageFiles(Page{Path: tt.path}, []byte("content"))
			var files []string
			err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if !d.IsDir() {
					files = append(files, p)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("walk: %v", err)
			}
			data, err := fs.ReadFile(fsys, tt.path)
			if err != nil || string(data) != "content" {
				t.Fatalf("read %s = %q, %v", tt.path, data, err)
			}
			want := 1
			if tt.wantIndex {
				want = 2
				target, err := fs.ReadLink(fsys, "index.html")
				if err != nil || target != tt.path {
					t.Errorf("index.html -> %q, %v; want -> %q", target, err, tt.path)
				}
			}
			if len(files) != want {
				t.Errorf("files = %q, want %d (the page, and an index.html link unless it is index.html)", files, want)
			}
		})
	}
}

// TestGroup: a page's summon group is what it loads (stylesheets, images),
// not the pages it links to nor itself; WriteConfig writes it as with,
// which the config accepts.
func TestGroup(t *testing.T) {
	pages, err := Plan([]string{"index.html", "about.html", "style.css", "logo.svg"},
		PlanOptions{Zone: "example.test.", Network: netip.MustParsePrefix("10.213.0.0/24"), Gateway: netip.MustParseAddr("10.213.0.1"), First: 10})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	l := NewLinks(pages)
	index := []byte(`<link rel="stylesheet" href="style.css"><a href="about.html">about</a><img src="logo.svg"><a href="index.html">me</a>`)
	css := []byte(`body { background: url(logo.svg) } a { color: red }`)
	for _, tc := range []struct {
		path string
		src  []byte
		want []string
	}{
		{"index.html", index, []string{"p-logo-svg", "p-style-css"}},
		{"style.css", css, []string{"p-logo-svg"}},
		{"about.html", []byte(`<p>no links</p>`), nil},
	} {
		out, _, err := l.Rewrite(tc.src, tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Group(out, l[tc.path]); !slices.Equal(got, tc.want) {
			t.Errorf("Group(%s) = %q, want %q", tc.path, got, tc.want)
		}
	}
	for i := range pages {
		if pages[i].Path == "index.html" {
			pages[i].With = []string{"p-logo-svg", "p-style-css"}
		}
	}
	var b bytes.Buffer
	initrd := func(p Page) string { return "/i/" + ImageName(p) }
	err = WriteConfig(&b, ConfigOptions{Zone: "example.test", Gateway: netip.MustParsePrefix("10.213.0.1/24"), Kernel: "/k", Initrd: initrd}, pages)
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse("generated.toml", b.Bytes())
	if err != nil {
		t.Fatalf("generated config does not validate: %v\n%s", err, b.String())
	}
	for _, u := range c.Unikernels {
		want := []string(nil)
		if u.Name == "p-index" {
			want = []string{"p-logo-svg", "p-style-css"}
		}
		if !slices.Equal(u.With, want) {
			t.Errorf("unikernel %s with %q, want %q", u.Name, u.With, want)
		}
	}
}
