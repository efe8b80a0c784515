package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// testAgent returns an agent whose clock is fixed at 1000 s, recording
// clock steps and re-seeds.
func testAgent(t *testing.T, reseedErr error) (*agent, *[]int64, *int) {
	t.Helper()
	var sets []int64
	reseeds := 0
	a := &agent{
		setClock: func(ns int64) error { sets = append(sets, ns); return nil },
		reseed:   func() error { reseeds++; return reseedErr },
		now:      func() time.Time { return time.Unix(1000, 0) },
		log:      func(format string, args ...any) { t.Logf(format, args...) },
	}
	return a, &sets, &reseeds
}

func TestAgentHandle(t *testing.T) {
	tests := []struct {
		name      string
		line      string
		want      string // reply without its newline; "" = no reply
		wantSets  []int64
		reseedErr error
		malformed int64
	}{
		{name: "libvirt's guest-sync", line: `{"execute":"guest-sync", "arguments":{"id":1764567890123}}`, want: `{"return":1764567890123}`},
		{name: "guest-sync with a u64 id", line: `{"execute":"guest-sync","arguments":{"id":18446744073709551615}}`, want: `{"return":18446744073709551615}`},
		{name: "guest-sync-delimited", line: `{"execute":"guest-sync-delimited","arguments":{"id":7}}`, want: "\xff" + `{"return":7}`},
		{name: "guest-sync without id", line: `{"execute":"guest-sync"}`, want: `{"error":{"class":"GenericError","desc":"guest-sync needs an integer id"}}`},
		{name: "guest-sync with a fractional id", line: `{"execute":"guest-sync","arguments":{"id":1.5}}`, want: `{"error":{"class":"GenericError","desc":"guest-sync needs an integer id"}}`},
		{name: "guest-ping", line: `{"execute":"guest-ping"}`, want: `{"return":{}}`},
		{name: "request id echoed", line: `{"execute":"guest-ping","id":"abc"}`, want: `{"id":"abc","return":{}}`},
		{name: "guest-get-time", line: `{"execute":"guest-get-time"}`, want: `{"return":1000000000000}`},
		{name: "libvirt's guest-set-time", line: `{"execute":"guest-set-time","arguments":{"time":1764567890123456789}}`, want: `{"return":{}}`, wantSets: []int64{1764567890123456789}},
		{name: "guest-set-time, re-seed fails", line: `{"execute":"guest-set-time","arguments":{"time":5}}`, reseedErr: errors.New("no hwrng"),
			want: `{"error":{"class":"GenericError","desc":"clock set, re-seed failed: no hwrng"}}`, wantSets: []int64{5}},
		{name: "guest-set-time without time", line: `{"execute":"guest-set-time"}`, want: `{"error":{"class":"Unsupported","desc":"guest-set-time without time: no RTC in this guest"}}`},
		{name: "guest-set-time, negative", line: `{"execute":"guest-set-time","arguments":{"time":-1}}`, want: `{"error":{"class":"GenericError","desc":"guest-set-time: time must be a positive integer (ns since the epoch)"}}`},
		{name: "guest-set-time, unknown argument", line: `{"execute":"guest-set-time","arguments":{"when":1}}`, want: `{"error":{"class":"GenericError","desc":"guest-set-time: json: unknown field \"when\""}}`},
		{name: "unknown command", line: `{"execute":"guest-exec","arguments":{"path":"/bin/sh"}}`, want: `{"error":{"class":"CommandNotFound","desc":"The command guest-exec has not been found"}}`},
		{name: "not JSON", line: `hello`, malformed: 1},
		{name: "two objects", line: `{"execute":"guest-ping"}{"execute":"guest-ping"}`, malformed: 1},
		{name: "no execute", line: `{"arguments":{}}`, malformed: 1},
		{name: "empty line", line: ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, sets, reseeds := testAgent(t, tt.reseedErr)
			got := a.handle([]byte(tt.line))
			want := ""
			if tt.want != "" {
				want = tt.want + "\n"
			}
			if string(got) != want {
				t.Errorf("reply %q, want %q", got, want)
			}
			if fmt.Sprint(*sets) != fmt.Sprint(tt.wantSets) && !(len(*sets) == 0 && len(tt.wantSets) == 0) {
				t.Errorf("clock set to %v, want %v", *sets, tt.wantSets)
			}
			if len(tt.wantSets) > 0 && *reseeds != 1 {
				t.Errorf("%d re-seeds after a clock step, want 1", *reseeds)
			}
			if len(tt.wantSets) == 0 && *reseeds != 0 {
				t.Errorf("%d re-seeds without a clock step, want 0", *reseeds)
			}
			if got := a.malformed.Load(); got != tt.malformed {
				t.Errorf("malformed = %d, want %d", got, tt.malformed)
			}
		})
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", agentMaxLine+1)
	tests := []struct {
		name      string
		chunks    []string
		want      []string
		wantDrops int
	}{
		{name: "one line in pieces", chunks: []string{`{"exe`, `cute":1}`, "\n"}, want: []string{`{"execute":1}`}},
		{name: "two lines in one read", chunks: []string{"a\nb\n"}, want: []string{"a", "b"}},
		{name: "partial line kept", chunks: []string{"a\nb"}, want: []string{"a"}},
		{name: "0xFF discards the partial line", chunks: []string{"garb", "\xffok\n"}, want: []string{"ok"}, wantDrops: 1},
		{name: "0xFF between lines is no drop", chunks: []string{"a\n\xffb\n"}, want: []string{"a", "b"}},
		{name: "over-long line dropped to its newline", chunks: []string{long, "tail\nnext\n"}, want: []string{"next"}, wantDrops: 1},
		{name: "line of exactly the limit kept", chunks: []string{strings.Repeat("y", agentMaxLine) + "\n"}, want: []string{strings.Repeat("y", agentMaxLine)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r lineReader
			var got []string
			drops := 0
			for _, c := range tt.chunks {
				r.feed([]byte(c), func(l []byte) { got = append(got, string(l)) }, func(string) { drops++ })
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("lines %q, want %q", got, tt.want)
			}
			if drops != tt.wantDrops {
				t.Errorf("%d drops, want %d", drops, tt.wantDrops)
			}
			if cap(r.buf) > agentMaxLine+1 {
				t.Errorf("buffer grew to %d bytes, bound is %d", cap(r.buf), agentMaxLine)
			}
		})
	}
}

func TestCharMajor(t *testing.T) {
	devices := "Character devices:\n  1 mem\n  4 /dev/vc/0\n  5 /dev/tty\n 10 misc\n252 virtio-portsdev\n\nBlock devices:\n253 virtblk\n254 virtio-portsdev\n"
	tests := []struct {
		driver string
		want   uint32
		ok     bool
	}{
		{"virtio-portsdev", 252, true},
		{"misc", 10, true},
		{"virtblk", 0, false}, // a block device
		{"nope", 0, false},
	}
	for _, tt := range tests {
		got, ok := charMajor(devices, tt.driver)
		if got != tt.want || ok != tt.ok {
			t.Errorf("charMajor(%q) = %d, %v, want %d, %v", tt.driver, got, ok, tt.want, tt.ok)
		}
	}
}
