package main

import (
	"slices"
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
		only    string
		want    []string
		wantErr bool
	}{
		{"", []string{"floor", "proxy", "noproxy", "delay", "cached"}, false},
		{"proxy,floor", []string{"proxy", "floor"}, false},
		{"floor,bogus", nil, true},
	}
	for _, tt := range tests {
		got, err := selectCases(tt.only)
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
