package main

import (
	"os"
	"slices"
	"testing"
	"time"
)

func TestParseSteps(t *testing.T) {
	tests := []struct {
		in      string
		m       int
		want    []int
		wantErr bool
	}{
		{"10,20,40", 200, []int{10, 20, 40}, false},
		{"10, 20 ,300", 200, []int{10, 20}, false},
		{"10,10", 200, nil, true},
		{"20,10", 200, nil, true},
		{"0", 200, nil, true},
		{"x", 200, nil, true},
		{"300", 200, nil, true},
	}
	for _, tt := range tests {
		got, err := parseSteps(tt.in, tt.m)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("parseSteps(%q, %d) = %v, %v; want %v, error %v", tt.in, tt.m, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestPercentile(t *testing.T) {
	var l latencies
	for i := 1; i <= 100; i++ {
		l.d = append(l.d, time.Duration(101-i)*time.Millisecond)
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := l.pct(tt.p); got != tt.want {
			t.Errorf("pct(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := (latencies{}).pct(99); got != 0 {
		t.Errorf("pct of no sample = %v, want 0", got)
	}
}

func TestBootTimes(t *testing.T) {
	log := `{"level":"info","logger":"hypervisor","msg":"domain started","domain":"jitsu-u001","took":0.5}
{"level":"info","logger":"hypervisor","msg":"domain started","domain":"jitsu-u002","took":1.5}
{"level":"info","logger":"hypervisor","msg":"domain started","domain":"jitsu-u003","took":9}
not json
{"level":"info","logger":"summoner","msg":"unikernel transition","unikernel":"u001","from":"starting","to":"ready","duration":2}
{"level":"info","logger":"summoner","msg":"unikernel transition","unikernel":"u001","from":"stopped","to":"starting","duration":7}
`
	path := t.TempDir() + "/jitsu.log"
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	create, ready := bootTimes(path, map[string]bool{"u001": true, "u002": true})
	if create != 1500*time.Millisecond || ready != 2*time.Second {
		t.Errorf("bootTimes = %v, %v; want 1.5s (median of u001, u002), 2s", create, ready)
	}
}
