package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPaired(t *testing.T) {
	ms := time.Millisecond
	mk := func(ds ...time.Duration) []sample {
		out := make([]sample, len(ds))
		for i, d := range ds {
			out[i] = sample{d: d}
		}
		return out
	}
	tests := []struct {
		name   string
		cs, rs []sample
		want   []time.Duration
	}{
		{"per round", mk(900*ms, 700*ms), mk(850*ms, 800*ms), []time.Duration{50 * ms, -100 * ms}},
		{"shorter reference", mk(1*ms, 2*ms), mk(1 * ms), []time.Duration{0}},
		{"none", nil, nil, []time.Duration{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := paired(tt.cs, tt.rs); !slices.Equal(got, tt.want) {
				t.Errorf("paired = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSelectCases(t *testing.T) {
	tests := []struct {
		only      string
		multiboot bool
		want      []string
		wantErr   bool
	}{
		{"", false, []string{"floor", "proxy", "noproxy", "delay", "cached", "warm", "resume", "snapshot", "warmsnap"}, false},
		{"warmsnap", true, nil, true}, // a snapshot case too
		{"floor,proxy,warm,resume,cached", false, []string{"floor", "proxy", "warm", "resume", "cached"}, false},
		{"proxy,floor", false, []string{"proxy", "floor"}, false},
		{"floor,bogus", false, nil, true},
		{"", true, []string{"floor", "proxy", "delay", "warm"}, false},
		{"warm,floor", true, []string{"warm", "floor"}, false},
		{"floor,resume", true, nil, true},
		{"snapshot", true, nil, true}, // the multiboot example's probe is its console
	}
	for _, tt := range tests {
		got, err := selectCases(tt.only, tt.multiboot)
		if (err != nil) != tt.wantErr {
			t.Errorf("selectCases(%q) error %v, want error %v", tt.only, err, tt.wantErr)
			continue
		}
		var keys []string
		for _, c := range got {
			keys = append(keys, c.key)
		}
		if !slices.Equal(keys, tt.want) {
			t.Errorf("selectCases(%q) = %v, want %v", tt.only, keys, tt.want)
		}
	}
}

func TestIsQEMUOf(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want bool
	}{
		{"libvirt's qemu", []string{"/usr/bin/qemu-system-x86_64", "-name", "guest=jitsu-www,debug-threads=on", "-S"}, true},
		{"plain -name", []string{"qemu-system-x86_64", "-name", "jitsu-www"}, true},
		{"another domain", []string{"/usr/bin/qemu-system-x86_64", "-name", "guest=jitsu-www2,debug-threads=on"}, false},
		{"not qemu", []string{"/bin/sh", "-c", "-name", "guest=jitsu-www"}, false},
		{"-name last", []string{"qemu-system-x86_64", "-name"}, false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isQEMUOf(tt.args, "jitsu-www"); got != tt.want {
				t.Errorf("isQEMUOf(%q) = %v, want %v", tt.args, got, tt.want)
			}
		})
	}
}

func TestRSSRow(t *testing.T) {
	tests := []struct {
		name string
		kib  []int
		want string
	}{
		{"stopped", []int{0, 0}, "no QEMU process"},
		{"warm", []int{62340, 62144, 64000}, "60.9 MiB  60.7 MiB  62.5 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := make([]sample, len(tt.kib))
			for i, k := range tt.kib {
				ss[i].rssKiB = k
			}
			if got := rssRow(ss); !strings.Contains(got, tt.want) {
				t.Errorf("rssRow = %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

func TestMultibootLabels(t *testing.T) {
	for _, k := range multibootCases {
		if !strings.Contains(multibootLabels[k], "JITSU-READY") {
			t.Errorf("case %s: multiboot label %q does not say what its first byte is", k, multibootLabels[k])
		}
	}
}
