package main

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/dnsserver"
)

// recordingSummoner implements dnsserver.Summoner and every optional
// interface the DNS server asserts on it, and records which were called.
type recordingSummoner struct {
	mu    sync.Mutex
	calls []string
	ready chan struct{}
}

func (r *recordingSummoner) record(m string) {
	r.mu.Lock()
	r.calls = append(r.calls, m)
	r.mu.Unlock()
}

func (r *recordingSummoner) called(m string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.calls, m)
}

func (r *recordingSummoner) Summon(context.Context, string) ([]netip.Addr, error) {
	r.record("Summon")
	return []netip.Addr{netip.MustParseAddr("10.213.0.6")}, nil
}

func (r *recordingSummoner) SummonFrom(context.Context, netip.Addr, string) ([]netip.Addr, error) {
	r.record("SummonFrom")
	return []netip.Addr{netip.MustParseAddr("10.213.0.6")}, nil
}

func (r *recordingSummoner) WaitReady(string) <-chan struct{} {
	r.record("WaitReady")
	return r.ready
}

// dnsOptional are the optional interfaces the DNS server type-asserts on
// its Summoner, each with a call through a wrapper that must reach the
// wrapped summoner (the method it records).
var dnsOptional = map[string]struct {
	typ    reflect.Type
	call   func(s dnsserver.Summoner, inner *recordingSummoner) bool
	method string
}{
	"SourceSummoner": {
		reflect.TypeFor[dnsserver.SourceSummoner](),
		func(s dnsserver.Summoner, _ *recordingSummoner) bool {
			addrs, err := s.(dnsserver.SourceSummoner).SummonFrom(context.Background(), netip.MustParseAddr("192.0.2.1"), "www")
			return err == nil && len(addrs) == 1
		},
		"SummonFrom",
	},
	"Waiter": {
		reflect.TypeFor[dnsserver.Waiter](),
		func(s dnsserver.Summoner, inner *recordingSummoner) bool {
			return s.(dnsserver.Waiter).WaitReady("www") == inner.ready
		},
		"WaitReady",
	},
}

// assertedOnSummoner parses package dnsserver and returns the names of the
// types it asserts its Summoner to (x.Summoner.(T)).
func assertedOnSummoner(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../dnsserver/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("dnsserver sources: %v %v", files, err)
	}
	seen := map[string]bool{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ta, ok := n.(*ast.TypeAssertExpr)
			if !ok || ta.Type == nil {
				return true
			}
			if sel, ok := ta.X.(*ast.SelectorExpr); ok && sel.Sel.Name == "Summoner" {
				if id, ok := ta.Type.(*ast.Ident); ok {
					seen[id.Name] = true
				} else {
					t.Errorf("%s: a type assertion on the Summoner this test does not understand", fset.Position(ta.Pos()))
				}
			}
			return true
		})
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TestDNSWrappersForward: the daemon's wrappers of the DNS server's
// Summoner (admissionDNS, frontdoorDNS, and both as serve wires them)
// implement every optional interface the DNS server type-asserts on its
// Summoner, and each call reaches the wrapped summoner: a wrapper that
// forgot one would silently turn a feature off (response delay, admission
// by source). The list of interfaces is read from dnsserver's sources, so
// a new one fails this test until the wrappers and dnsOptional have it.
func TestDNSWrappersForward(t *testing.T) {
	asserted := assertedOnSummoner(t)
	if len(asserted) == 0 {
		t.Fatal("found no type assertion on the DNS server's Summoner: the parser missed them")
	}
	for _, name := range asserted {
		if _, ok := dnsOptional[name]; !ok {
			t.Errorf("dnsserver asserts its Summoner to %s: forward it in admissionDNS and frontdoorDNS, and list it in dnsOptional", name)
		}
	}
	cfg, err := config.Parse("test.toml", []byte(frontdoorTOML))
	if err != nil {
		t.Fatal(err)
	}
	fd := &frontDoor{}
	fd.update(cfg)
	wrappers := map[string]func(inner *recordingSummoner) dnsserver.Summoner{
		"admissionDNS": func(inner *recordingSummoner) dnsserver.Summoner { return newAdmissionDNS(inner, cfg) },
		"frontdoorDNS": func(inner *recordingSummoner) dnsserver.Summoner { return fd.dnsSummoner(inner) },
		"frontdoorDNS(admissionDNS)": func(inner *recordingSummoner) dnsserver.Summoner {
			return fd.dnsSummoner(newAdmissionDNS(inner, cfg))
		},
	}
	for wname, wrap := range wrappers {
		for iname, opt := range dnsOptional {
			t.Run(wname+"/"+iname, func(t *testing.T) {
				inner := &recordingSummoner{ready: make(chan struct{})}
				s := wrap(inner)
				if !reflect.TypeOf(s).Implements(opt.typ) {
					t.Fatalf("%s does not implement dnsserver.%s", wname, iname)
				}
				if !opt.call(s, inner) || !inner.called(opt.method) {
					t.Errorf("%s.%s did not reach the wrapped summoner (calls %q)", wname, opt.method, inner.calls)
				}
			})
		}
	}
}
