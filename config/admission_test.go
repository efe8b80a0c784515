package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withHost makes the host-derived defaults those of h for one test.
func withHost(t *testing.T, h Host) {
	old := HostResources
	HostResources = func() Host { return h }
	t.Cleanup(func() { HostResources = old })
}

func TestAdmissionConfig(t *testing.T) {
	withHost(t, Host{Cores: 4, Memory: 8 << 30})
	for _, tc := range []struct {
		name string
		text string
		want AdmissionConfig
		err  string
	}{
		{"defaults from the cores", "", AdmissionConfig{BootRate: 2, BootBurst: 8, PrefixRate: 0.2, PrefixBurst: 8, OnRefuse: "answer"}, ""},
		{"set", "[admission]\nboot_rate = 0.5\nboot_burst = 2\nprefix_rate = 1\nprefix_burst = 3\non_refuse = \"servfail\"\n",
			AdmissionConfig{BootRate: 0.5, BootBurst: 2, PrefixRate: 1, PrefixBurst: 3, OnRefuse: "servfail"}, ""},
		{"zero rate", "[admission]\nboot_rate = 0\n", AdmissionConfig{}, "admission.boot_rate"},
		{"rate not a number", "[admission]\nprefix_rate = \"fast\"\n", AdmissionConfig{}, "admission.prefix_rate"},
		{"zero burst", "[admission]\nprefix_burst = 0\n", AdmissionConfig{}, "admission.prefix_burst"},
		{"bad on_refuse", "[admission]\non_refuse = \"drop\"\n", AdmissionConfig{}, "admission.on_refuse"},
		{"unknown key", "[admission]\nboot_rat = 1\n", AdmissionConfig{}, "admission.boot_rat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("test.toml", []byte(tc.text))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one about %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Admission != tc.want {
				t.Fatalf("admission = %+v, want %+v", c.Admission, tc.want)
			}
		})
	}
}

func TestBudgetFromHost(t *testing.T) {
	for _, tc := range []struct {
		name string
		host Host
		text string
		want BudgetConfig
	}{
		{"8 GiB host", Host{Cores: 2, Memory: 8 << 30}, "", BudgetConfig{MaxRunning: 48, MaxStarting: 2, Memory: 6 << 30, MinUp: 30 * time.Second, WarmMax: DefaultWarmMax, WarmMemory: DefaultWarmMemory}},
		{"tiny host", Host{Cores: 1, Memory: 100 << 20}, "", BudgetConfig{MaxRunning: 1, MaxStarting: 1, Memory: 75 << 20, MinUp: 30 * time.Second, WarmMax: DefaultWarmMax, WarmMemory: DefaultWarmMemory}},
		{"unknown memory: unlimited", Host{Cores: 1}, "", BudgetConfig{MaxStarting: 1, MinUp: 30 * time.Second, WarmMax: DefaultWarmMax, WarmMemory: DefaultWarmMemory}},
		{"explicit 0 is unlimited", Host{Cores: 2, Memory: 8 << 30}, "[budget]\nmax_running = 0\nmemory = \"0\"\nmin_up = \"0s\"\nwarm_max = 0\nwarm_memory = \"0\"\nmax_starting = 0\n", BudgetConfig{}},
		{"unknown cores: one start", Host{Memory: 8 << 30}, "[budget]\nmax_running = 0\nmemory = \"0\"\nmin_up = \"0s\"\nwarm_max = 0\nwarm_memory = \"0\"\n", BudgetConfig{MaxStarting: 1}},
		{"8 cores, max_starting set", Host{Cores: 8, Memory: 8 << 30}, "[budget]\nmax_running = 0\nmemory = \"0\"\nmin_up = \"0s\"\nwarm_max = 0\nwarm_memory = \"0\"\nmax_starting = 3\n", BudgetConfig{MaxStarting: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withHost(t, tc.host)
			if c := mustParse(t, tc.text); c.Budget != tc.want {
				t.Fatalf("budget = %+v, want %+v", c.Budget, tc.want)
			}
		})
	}
}

func TestDropAfter(t *testing.T) {
	c := mustParse(t, base+"\n[defaults]\ndrop_after = \"1h\"\n"+unikernel("a", "2")+unikernel("b", "3", `drop_after = "0s"`))
	if a, b := c.Unikernel("a"), c.Unikernel("b"); a.DropAfter != time.Hour || b.DropAfter != 0 {
		t.Fatalf("drop_after a=%v b=%v, want 1h and 0s", a.DropAfter, b.DropAfter)
	}
	if c := mustParse(t, base+unikernel("a", "2")); c.Unikernels[0].DropAfter != DefaultDropAfter {
		t.Fatalf("default drop_after %v", c.Unikernels[0].DropAfter)
	}
}

func TestFitWarnings(t *testing.T) {
	uks := base + unikernel("a", "2", `memory = "1GiB"`) + unikernel("b", "3", `memory = "1GiB"`) + unikernel("c", "4", `memory = "1GiB"`)
	for _, tc := range []struct {
		name   string
		budget string
		host   Host
		want   []string
	}{
		{"all fit", "[budget]\nmax_running = 3\nmemory = \"4GiB\"\n", Host{Memory: 16 << 30}, nil},
		{"max_running", "[budget]\nmax_running = 2\nmemory = \"4GiB\"\n", Host{Memory: 16 << 30}, []string{"budget.max_running is 2"}},
		{"budget memory", "[budget]\nmax_running = 3\nmemory = \"2GiB\"\n", Host{Memory: 16 << 30}, []string{"budget.memory is 2GiB"}},
		{"host memory", "[budget]\nmax_running = 0\nmemory = \"0\"\n", Host{Memory: 2 << 30}, []string{"the host has 2GiB"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, strings.Replace(uks, "\n[[unikernel]]", "\n"+tc.budget+"\n[[unikernel]]", 1))
			got := c.FitWarnings(tc.host)
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q does not say %q", got[i], w)
				}
			}
		})
	}
}

func TestMemTotal(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(p, []byte("MemTotal:        8041832 kB\nMemFree:  1 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := memTotal(p); got != 8041832<<10 {
		t.Fatalf("memTotal = %d", got)
	}
	if got := memTotal(filepath.Join(t.TempDir(), "none")); got != 0 {
		t.Fatalf("memTotal of a missing file = %d", got)
	}
}
