package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/control"
)

// opsDaemon is a fake control.Daemon recording what it is asked.
type opsDaemon struct {
	mu     sync.Mutex
	status []control.UnikernelStatus
	calls  []string
	reload error
}

func (d *opsDaemon) Status(context.Context) ([]control.UnikernelStatus, error) {
	return d.status, nil
}

func (d *opsDaemon) known(name string) error {
	for _, u := range d.status {
		if u.Name == name {
			return nil
		}
	}
	return fmt.Errorf("no unikernel %q: %w", name, control.ErrUnknown)
}

func (d *opsDaemon) Start(_ context.Context, name string) error {
	d.mu.Lock()
	d.calls = append(d.calls, "start "+name)
	d.mu.Unlock()
	return d.known(name)
}

func (d *opsDaemon) Stop(_ context.Context, name, mode string) error {
	d.mu.Lock()
	d.calls = append(d.calls, "stop "+name+" "+mode)
	d.mu.Unlock()
	return d.known(name)
}

func (d *opsDaemon) Reload(context.Context) error {
	d.mu.Lock()
	d.calls = append(d.calls, "reload")
	d.mu.Unlock()
	return d.reload
}

// startControl serves d on a fresh socket for the test's duration.
func startControl(t *testing.T, d control.Daemon) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	s, err := control.Listen(path, 0o600, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control server: %v", err)
		}
	})
	return path
}

// runCLI runs the CLI with args and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), &cliEnv{stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func sampleDaemon() *opsDaemon {
	now := time.Now()
	return &opsDaemon{status: []control.UnikernelStatus{
		{Name: "www", State: "ready", Addrs: []string{"10.213.0.10"}, Since: now.Add(-90 * time.Second),
			LastActivity: now.Add(-3 * time.Second), Boots: 2, LastBootDuration: 1234 * time.Millisecond,
			LastBoot: &control.BootTimeline{Query: now.Add(-92 * time.Second)}},
		{Name: "blog", State: "stopped", Addrs: []string{"10.213.0.11"}, LastError: "boot timed out after 30s"},
	}}
}

func TestStatusTable(t *testing.T) {
	sock := startControl(t, sampleDaemon())
	code, out, errs := runCLI(t, "status", "--socket", sock)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want header, 2 unikernels and blog's error:\n%s", len(lines), out)
	}
	wants := []string{
		`^NAME +STATE +ADDRESS +UPTIME +LAST-ACTIVITY +BOOTS +LAST-BOOT$`,
		`^www +ready +10\.213\.0\.10 +1m30s +3\.\d+s ago +2 +1\.234s$`,
		`^blog +stopped +10\.213\.0\.11 +- +- +0 +-$`,
		`^blog: last error: boot timed out after 30s$`,
	}
	for i, w := range wants {
		if !regexp.MustCompile(w).MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i, lines[i], w)
		}
	}
	// The columns line up: STATE starts at the same offset on every row.
	if strings.Index(lines[0], "STATE") != strings.Index(lines[1], "ready") || strings.Index(lines[1], "ready") != strings.Index(lines[2], "stopped") {
		t.Errorf("columns not aligned:\n%s", out)
	}
}

func TestStatusJSON(t *testing.T) {
	sock := startControl(t, sampleDaemon())
	code, out, errs := runCLI(t, "status", "--json", "--socket", sock)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	var got []control.UnikernelStatus
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if len(got) != 2 || got[0].Name != "www" || got[0].Boots != 2 || got[1].LastError == "" {
		t.Errorf("got %+v", got)
	}
}

func TestControlCommands(t *testing.T) {
	d := sampleDaemon()
	d.reload = fmt.Errorf("%w: jitsu.toml:7: unikernel[0].kernel: missing", control.ErrConfig)
	sock := startControl(t, d)
	missing := filepath.Join(t.TempDir(), "nothing.sock")
	tests := []struct {
		name       string
		args       []string
		code       int
		out, err   string
		call       string
		jsonResult bool
	}{
		{"start", []string{"start", "--socket", sock, "www"}, exitOK, "started www\n", "", "start www", false},
		{"start unknown", []string{"start", "--socket", sock, "nope"}, exitFail, "", `no unikernel "nope"`, "start nope", false},
		{"stop with mode after the name", []string{"stop", "--socket", sock, "www", "--mode", "suspend"}, exitOK, "stopped www (suspend)\n", "", "stop www suspend", false},
		{"stop default mode", []string{"stop", "--socket=" + sock, "blog"}, exitOK, "stopped blog\n", "", "stop blog ", false},
		{"stop bad mode", []string{"stop", "--socket", sock, "--mode", "explode", "www"}, exitUsage, "", `unknown --mode "explode"`, "", false},
		{"stop without name", []string{"stop", "--socket", sock}, exitUsage, "", "Usage: jitsu stop", "", false},
		{"reload invalid config", []string{"reload", "--socket", sock}, exitFail, "", "jitsu.toml:7: unikernel[0].kernel: missing", "reload", false},
		{"not running", []string{"start", "--socket", missing, "www"}, exitFail, "", "jitsu is not running (no socket at " + missing + ")", "", false},
		{"json ok", []string{"start", "--json", "--socket", sock, "www"}, exitOK, `"ok": true`, "", "start www", true},
		{"json unknown", []string{"stop", "--json", "--socket", sock, "nope"}, exitFail, `"kind": "unknown"`, "", "stop nope ", true},
		{"json not running", []string{"status", "--json", "--socket", missing}, exitFail, `"kind": "not-running"`, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d.mu.Lock()
			d.calls = nil
			d.mu.Unlock()
			code, out, errs := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", code, tt.code, out, errs)
			}
			if tt.jsonResult {
				var v map[string]any
				if err := json.Unmarshal([]byte(out), &v); err != nil {
					t.Errorf("stdout is not JSON: %q", out)
				}
			}
			if !strings.Contains(out, tt.out) || (tt.out == "" && out != "") {
				t.Errorf("stdout %q, want %q", out, tt.out)
			}
			if !strings.Contains(errs, tt.err) || (tt.err == "" && errs != "") {
				t.Errorf("stderr %q, want %q", errs, tt.err)
			}
			d.mu.Lock()
			calls := strings.Join(d.calls, "|")
			d.mu.Unlock()
			if calls != tt.call {
				t.Errorf("daemon calls %q, want %q", calls, tt.call)
			}
		})
	}
}

func TestSocketFromConfig(t *testing.T) {
	sock := startControl(t, sampleDaemon())
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jitsu.toml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("[control]\nsocket = %q\n", sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "status", "--config", cfgPath)
	if code != exitOK || !strings.Contains(out, "www") {
		t.Fatalf("status --config: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[control]\nsocket = 12\n"), 0o644)
	if code, _, errs := runCLI(t, "status", "--config", bad); code != exitUsage || !strings.Contains(errs, "bad.toml:2") {
		t.Errorf("status with an invalid config: exit %d, stderr %q", code, errs)
	}
}

func TestDoctorCommand(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jitsu.toml")
	text := `[hypervisor]
uri = "qemu+unix:///system?socket=/nonexistent"
domain_type = "kvm"
[network]
bridge = "jitsu-nobr0"
`
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "doctor", "--config", cfgPath, "--skip-probe")
	if code != exitFail {
		t.Errorf("doctor with libvirtd unreachable: exit %d, want %d; stderr %q", code, exitFail, errs)
	}
	for _, want := range []string{"FAIL  libvirtd at qemu+unix:///system?socket=/nonexistent", "fix: start libvirtd", "FAIL  bridge jitsu-nobr0", "check(s) failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, "doctor", "--config", cfgPath, "--skip-probe", "--json")
	var rep struct {
		OK      bool `json:"ok"`
		Results []struct{ Check, Status, Fix string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitFail || rep.OK || len(rep.Results) == 0 {
		t.Errorf("doctor --json: exit %d, %+v, %v\n%s", code, rep, err, out)
	}
	if code, _, errs := runCLI(t, "doctor", "--config", filepath.Join(dir, "missing.toml")); code != exitUsage || !strings.Contains(errs, "missing.toml") {
		t.Errorf("doctor with a missing config: exit %d, stderr %q", code, errs)
	}
}
