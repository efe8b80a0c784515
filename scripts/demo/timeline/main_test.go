package main

import (
	"strings"
	"testing"
	"time"
)

func mustRules(t *testing.T) []compiledRule {
	t.Helper()
	rs, err := compile(rules)
	if err != nil {
		t.Fatalf("compile rules: %v", err)
	}
	return rs
}

func TestCollectLabels(t *testing.T) {
	rs := mustRules(t)
	since := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name      string
		line      string
		unikernel string
		want      string // "" means: no row
	}{
		{"transition to starting", `{"ts":"2025-01-02T03:04:05.010Z","level":"info","msg":"state","unikernel":"www","from":"stopped","to":"starting","reason":"dns"}`, "www", "www: stopped → starting (dns)"},
		{"transition to ready with duration", `{"ts":"2025-01-02T03:04:07.010Z","level":"info","msg":"transition","unikernel":"www","from":"starting","to":"ready","duration":"2.5s"}`, "www", "www: starting → ready: ready (2.5s after the start)"},
		{"idle stop", `{"ts":"2025-01-02T03:04:27Z","level":"info","msg":"transition","unikernel":"www","from":"ready","to":"stopped","reason":"idle"}`, "www", "www: ready → stopped (idle)"},
		{"summoner's replay, list of addresses", `{"ts":"2025-01-02T03:04:07Z","level":"info","msg":"held SYNs replayed","unikernel":"www","packets":2,"addrs":["10.213.0.5","fd00::5"]}`, "www", "held SYNs replayed (2) to 10.213.0.5, fd00::5"},
		{"trigger of a boot", `{"ts":"2025-01-02T03:04:07Z","level":"info","msg":"booting unikernel","unikernel":"www","trigger":"tcp"}`, "www", "www: booting (trigger: tcp)"},
		{"start mode of a boot", `{"ts":"2025-01-02T03:04:07Z","level":"info","msg":"booting unikernel","unikernel":"fast","trigger":"dns","mode":"warm"}`, "fast", "fast: booting (trigger: dns, start mode: warm)"},
		{"warm domain resumed", `{"ts":"2025-01-02T03:04:07Z","level":"info","msg":"domain resumed","domain":"jitsu-fast"}`, "fast", "domain resumed"},
		{"empty parens dropped", `{"ts":"2025-01-02T03:04:07Z","level":"info","msg":"syns replayed","unikernel":"www","ip":"10.213.0.5"}`, "www", "SYNs replayed to 10.213.0.5"},
		{"query answered", `{"ts":"2025-01-02T03:04:05.001Z","level":"info","msg":"query answered","name":"www.example.test.","qtype":"A","ip":"10.213.0.5"}`, "www", "DNS query answered: www.example.test. A → 10.213.0.5"},
		{"other unikernel skipped", `{"ts":"2025-01-02T03:04:06Z","level":"info","msg":"state","unikernel":"blog","from":"stopped","to":"starting"}`, "www", ""},
		{"before since skipped", `{"ts":"2025-01-02T03:04:04Z","level":"info","msg":"state","unikernel":"www","from":"stopped","to":"starting"}`, "www", ""},
		{"unknown relevant line kept raw", `{"ts":"2025-01-02T03:04:06Z","level":"info","msg":"frobnicated","unikernel":"www","n":3}`, "www", "· frobnicated n=3 unikernel=www"},
		{"unknown warning kept", `{"ts":"2025-01-02T03:04:06Z","level":"warn","msg":"libvirt reconnect"}`, "www", "· libvirt reconnect [warn]"},
		{"unknown irrelevant line dropped", `{"ts":"2025-01-02T03:04:06Z","level":"info","msg":"listening","addr":"127.0.0.1:5353"}`, "www", ""},
		{"not json", `panic: oops`, "www", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := collect(strings.NewReader(tt.line+"\n"), rs, options{since: since, unikernel: tt.unikernel})
			if err != nil {
				t.Fatalf("collect: %v", err)
			}
			if tt.want == "" {
				if len(rows) != 0 {
					t.Fatalf("got rows %+v, want none", rows)
				}
				return
			}
			if len(rows) != 1 || rows[0].label != tt.want {
				t.Fatalf("got %+v, want one row %q", rows, tt.want)
			}
		})
	}
}

func TestIdled(t *testing.T) {
	rs := mustRules(t)
	log := strings.Join([]string{
		`{"ts":"2025-01-02T03:04:05Z","level":"info","msg":"state","unikernel":"a","from":"stopped","to":"starting"}`,
		`{"ts":"2025-01-02T03:04:06Z","level":"info","msg":"state","unikernel":"b","from":"stopped","to":"starting"}`,
		`{"ts":"2025-01-02T03:04:07Z","level":"info","msg":"state","unikernel":"a","from":"ready","to":"stopped","reason":"idle"}`,
		`{"ts":"2025-01-02T03:04:08Z","level":"info","msg":"state","unikernel":"b","from":"ready","to":"stopped","reason":"idle"}`,
		`{"ts":"2025-01-02T03:04:09Z","level":"info","msg":"state","unikernel":"b","from":"stopped","to":"starting"}`,
	}, "\n")
	rows, err := collect(strings.NewReader(log), rs, options{since: time.Unix(0, 0)})
	if err != nil {
		t.Fatalf("collect: %v", err)
	}
	got := strings.Join(idled(rows), ",")
	if got != "a" {
		t.Fatalf("idled = %q, want %q", got, "a")
	}
}

func TestClientEventsMerged(t *testing.T) {
	rs := mustRules(t)
	since := time.Unix(100, 0)
	var o options
	o.since = since
	f := eventFlag{&o.events}
	for _, s := range []string{"100500000000=first byte", "100000000000=dig sent"} {
		if err := f.Set(s); err != nil {
			t.Fatalf("Set(%q): %v", s, err)
		}
	}
	if err := f.Set("no-equals"); err == nil {
		t.Fatal("Set without = succeeded")
	}
	rows, err := collect(strings.NewReader(""), rs, o)
	if err != nil {
		t.Fatalf("collect: %v", err)
	}
	var b strings.Builder
	write(&b, rows, since)
	want := "        +0.0 ms  client  dig sent\n      +500.0 ms  client  first byte\n"
	if b.String() != want {
		t.Fatalf("write =\n%s\nwant\n%s", b.String(), want)
	}
}
