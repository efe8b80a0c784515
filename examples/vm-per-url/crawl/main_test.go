package main

import (
	"strings"
	"testing"
)

func TestLinks(t *testing.T) {
	tests := []struct {
		name, base, ct, body string
		want                 []string
	}{
		{
			name: "html href src style, relative resolved, fragments dropped, duplicates once",
			base: "http://p-index.example.test/",
			ct:   "text/html; charset=utf-8",
			body: `<link href="http://p-style-css.example.test/style.css"><img src="/logo.svg"><a href="about.html#x">a</a><a href="about.html">b</a>` +
				`<div style="background:url('http://p-logo-svg.example.test/logo.svg')"></div><a href="mailto:x@y">m</a><a href="#top">t</a><br>`,
			want: []string{"http://p-style-css.example.test/style.css", "http://p-index.example.test/logo.svg", "http://p-index.example.test/about.html", "http://p-logo-svg.example.test/logo.svg"},
		},
		{
			name: "css",
			base: "http://p-style-css.example.test/style.css",
			ct:   "text/css; charset=utf-8",
			body: `h1 { background: url("http://p-logo-svg.example.test/logo.svg") } b { x: url(img/a.png) } c { y: url(data:image/png;base64,AA) }`,
			want: []string{"http://p-logo-svg.example.test/logo.svg", "http://p-style-css.example.test/img/a.png"},
		},
		{
			name: "images have no links",
			base: "http://p-logo-svg.example.test/logo.svg",
			ct:   "image/svg+xml",
			body: `<svg><a href="x"/></svg>`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := links(tt.base, tt.ct, []byte(tt.body))
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("links =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestInZone(t *testing.T) {
	tests := []struct {
		url  string
		want bool
	}{
		{"http://p-a.example.test/", true},
		{"http://P-A.Example.Test./x", true},
		{"http://example.test/", true},
		{"http://notexample.test/", false},
		{"https://github.com/jitsu-unikernel/jitsu", false},
	}
	for _, tt := range tests {
		if got := inZone(tt.url, "example.test"); got != tt.want {
			t.Errorf("inZone(%q) = %v, want %v", tt.url, got, tt.want)
		}
	}
}

func TestResources(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"stylesheet and logo, pages skipped",
			[]string{"http://p-style-css.example.test/style.css", "http://p-index.example.test/", "http://p-logo-svg.example.test/logo.svg",
				"http://p-about.example.test/about.html", "http://p-b.example.test/blog/X.HTM", "http://p-i.example.test"},
			[]string{"http://p-style-css.example.test/style.css", "http://p-logo-svg.example.test/logo.svg"}},
		{"outside the zone", []string{"https://github.com/x.png"}, nil},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resources(tt.in, "example.test")
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("resources = %q, want %q", got, tt.want)
			}
		})
	}
}
