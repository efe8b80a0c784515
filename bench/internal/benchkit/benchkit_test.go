package benchkit

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		in   []time.Duration
		want Summary
	}{
		{"empty", nil, Summary{}},
		{"one", []time.Duration{5 * ms}, Summary{N: 1, Median: 5 * ms, P90: 5 * ms, Min: 5 * ms, Max: 5 * ms}},
		{"even count, unsorted", []time.Duration{4 * ms, 1 * ms, 3 * ms, 2 * ms},
			Summary{N: 4, Median: 2500 * time.Microsecond, P90: 4 * ms, Min: 1 * ms, Max: 4 * ms}},
		{"ten, negatives", []time.Duration{-5 * ms, 1 * ms, 2 * ms, 3 * ms, 4 * ms, 5 * ms, 6 * ms, 7 * ms, 8 * ms, 9 * ms},
			Summary{N: 10, Median: 4500 * time.Microsecond, P90: 8 * ms, Min: -5 * ms, Max: 9 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Summarize(tt.in); got != tt.want {
				t.Errorf("Summarize(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}
