package summoner

import (
	"slices"
	"testing"
)

// TestBudgetPlan checks the budget's pure decision, like transition's.
func TestBudgetPlan(t *testing.T) {
	run := func(n int) claim { return claim{running: n} }
	mem := func(m uint64) claim { return claim{memory: m} }
	ready := func(m uint64, act int64) candidate { return candidate{claim{1, 0, m, 0, 0}, act} }
	suspended := func(m uint64, act int64) candidate { return candidate{claim{0, 0, m, 0, 0}, act} }
	for _, tc := range []struct {
		name    string
		b       budget
		used    claim
		need    claim
		cands   []candidate
		victims []int
		why     string
	}{
		{"unlimited", budget{}, run(100), claim{1, 1, 1 << 40, 0, 0}, nil, nil, ""},
		{"fits", budget{maxRunning: 2}, run(1), claim{1, 1, 0, 0, 0}, []candidate{ready(0, 1)}, nil, ""},
		{"least recently active goes", budget{maxRunning: 2}, run(2), claim{1, 1, 0, 0, 0},
			[]candidate{ready(0, 5), ready(0, 3), ready(0, 9)}, []int{1}, ""},
		{"two go for memory", budget{memory: 100}, mem(90), claim{1, 1, 60, 0, 0},
			[]candidate{ready(30, 1), ready(30, 2), ready(30, 3)}, []int{0, 1}, ""},
		{"nothing idle", budget{maxRunning: 1}, run(1), claim{1, 1, 0, 0, 0}, nil, nil, "nothing idle to stop"},
		{"too many booting", budget{maxBooting: 1}, claim{1, 1, 0, 0, 0}, claim{1, 1, 0, 0, 0},
			[]candidate{ready(0, 1)}, nil, "too many booting"},
		{"suspended frees memory only", budget{memory: 100}, mem(64), claim{1, 1, 64, 0, 0},
			[]candidate{suspended(64, 1)}, []int{0}, ""},
		{"suspended skipped when memory is not short", budget{maxRunning: 1}, claim{1, 0, 64, 0, 0}, claim{1, 1, 0, 0, 0},
			[]candidate{suspended(64, 1), ready(0, 2)}, []int{1}, ""},
		{"not enough to free", budget{memory: 100}, mem(90), claim{1, 1, 90, 0, 0},
			[]candidate{ready(30, 1)}, nil, "nothing idle to stop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			victims, why := tc.b.plan(tc.used, tc.need, tc.cands)
			if !slices.Equal(victims, tc.victims) || why != tc.why {
				t.Fatalf("plan = %v %q, want %v %q", victims, why, tc.victims, tc.why)
			}
		})
	}
}
