package doctor

import (
	"strings"
	"testing"

	"github.com/jitsu-unikernel/jitsu/config"
)

func TestCheckFit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget config.BudgetConfig
		host   config.Host
		want   Status
		detail string
	}{
		{"fits", config.BudgetConfig{MaxRunning: 4, Memory: 1 << 30}, config.Host{Memory: 4 << 30}, Pass, "2 unikernels fit"},
		{"max_running", config.BudgetConfig{MaxRunning: 1, Memory: 1 << 30}, config.Host{Memory: 4 << 30}, Warn, "max_running is 1"},
		{"host memory", config.BudgetConfig{}, config.Host{Memory: 256 << 20}, Warn, "the host has 256MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{Budget: tc.budget, Unikernels: []config.Unikernel{{Name: "a", Memory: 128 << 20}, {Name: "b", Memory: 128 << 20}}}
			r := checkFit(cfg, tc.host)
			if r.Status != tc.want || !strings.Contains(r.Detail, tc.detail) {
				t.Fatalf("got %s %q, want %s with %q", r.Status, r.Detail, tc.want, tc.detail)
			}
			if r.Status == Warn && r.Fix == "" {
				t.Fatal("a warning without a fix")
			}
		})
	}
}
