package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/control"
	"github.com/jitsu-unikernel/jitsu/doctor"
	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// opTimeout bounds one control request; a start may wait for the boot.
const opTimeout = 2 * time.Minute

// ctlFlags are the flags of the commands that talk to a running daemon.
type ctlFlags struct {
	socket, config string
	json           bool
}

func addCtlFlags(fs *flag.FlagSet) *ctlFlags {
	f := &ctlFlags{}
	fs.StringVar(&f.socket, "socket", "", "control socket of the daemon (default: --config's [control] socket, else "+control.DefaultSocket+")")
	fs.StringVar(&f.config, "config", "", "config file whose [control] socket to use")
	fs.BoolVar(&f.json, "json", false, "print JSON for scripts")
	return f
}

// socketPath resolves --socket, then --config's control socket, then the
// default.
func (f *ctlFlags) socketPath() (string, error) {
	if f.socket != "" {
		return f.socket, nil
	}
	if f.config == "" {
		return control.DefaultSocket, nil
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		return "", err
	}
	if cfg.Control.Socket == "" {
		return "", fmt.Errorf("%s has no control socket ([control] socket is empty)", f.config)
	}
	return cfg.Control.Socket, nil
}

// parseInterspersed parses flags before and after positional arguments
// (jitsu stop www --mode suspend) and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var pos []string
	for {
		if code, ok := parseFlags(fs, args); !ok {
			return nil, code, false
		}
		if fs.NArg() == 0 {
			return pos, exitOK, true
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// parsePositional is parseInterspersed for a command that takes exactly n
// positional arguments: a command that takes none names the first extra
// one, the others print their usage.
func parsePositional(env *cliEnv, fs *flag.FlagSet, args []string, n int) ([]string, int, bool) {
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return nil, code, false
	}
	if len(pos) != n {
		if n == 0 {
			fmt.Fprintf(env.stderr, "%s: unexpected argument %q\n", fs.Name(), pos[0])
		} else {
			fs.Usage()
		}
		return nil, exitUsage, false
	}
	return pos, exitOK, true
}

// dialDaemon connects to the daemon, printing why not on failure.
func dialDaemon(ctx context.Context, env *cliEnv, f *ctlFlags) (*control.Client, int) {
	path, err := f.socketPath()
	if err != nil {
		if f.json {
			printJSONError(env, err)
		} else {
			printConfigError(env, err)
		}
		return nil, exitUsage
	}
	c, err := control.Dial(ctx, path)
	if err != nil {
		return nil, fail(env, f, err)
	}
	return c, exitOK
}

// fail prints err (as JSON with --json) and returns the exit code.
func fail(env *cliEnv, f *ctlFlags, err error) int {
	if f.json {
		printJSONError(env, err)
	} else {
		fmt.Fprintf(env.stderr, "jitsu: %v\n", err)
	}
	if errors.Is(err, control.ErrInvalid) {
		return exitUsage
	}
	return exitFail
}

// opResult is the --json output of start, stop and reload.
type opResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Kind is unknown, invalid, config, not-running, permission or other.
	Kind string `json:"kind,omitempty"`
}

func printJSONError(env *cliEnv, err error) {
	kind := "other"
	for _, k := range []struct {
		err  error
		name string
	}{{control.ErrUnknown, "unknown"}, {control.ErrInvalid, "invalid"}, {control.ErrConfig, "config"},
		{control.ErrNotRunning, "not-running"}, {control.ErrPermission, "permission"}} {
		if errors.Is(err, k.err) {
			kind = k.name
			break
		}
	}
	writeJSON(env, opResult{Error: err.Error(), Kind: kind})
}

func writeJSON(env *cliEnv, v any) {
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func runStatus(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "status", "")
	f := addCtlFlags(fs)
	if _, code, ok := parsePositional(env, fs, args, 0); !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	c, code := dialDaemon(ctx, env, f)
	if c == nil {
		return code
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return fail(env, f, err)
	}
	if f.json {
		if st == nil {
			st = []control.UnikernelStatus{}
		}
		writeJSON(env, st)
		return exitOK
	}
	printStatusTable(env, st, time.Now())
	return exitOK
}

// printStatusTable prints one line per unikernel, aligned.
func printStatusTable(env *cliEnv, st []control.UnikernelStatus, now time.Time) {
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tADDRESS\tUPTIME\tLAST-ACTIVITY\tBOOTS\tLAST-BOOT")
	for _, u := range st {
		uptime := "-"
		if isUp(u.State) && !u.Since.IsZero() {
			uptime = shortDuration(now.Sub(u.Since))
		}
		activity := "-"
		if !u.LastActivity.IsZero() {
			activity = shortDuration(now.Sub(u.LastActivity)) + " ago"
		}
		boot := "-"
		if u.LastBootDuration > 0 {
			boot = u.LastBootDuration.Round(time.Millisecond).String()
		}
		addr := strings.Join(u.Addrs, ",")
		if addr == "" {
			addr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", u.Name, shownState(u, now), addr, uptime, activity, u.Boots, boot)
	}
	tw.Flush()
	for _, u := range st {
		if u.LastError != "" {
			fmt.Fprintf(env.stdout, "%s: last error: %s\n", u.Name, u.LastError)
		}
	}
}

// shownState is u's state, with how long a starting one has waited in
// the start queue (max_starting) so far.
func shownState(u control.UnikernelStatus, now time.Time) string {
	if b := u.LastBoot; u.State == "starting" && b != nil && !b.Queued.IsZero() && b.Start.IsZero() {
		return "starting (queued " + shortDuration(now.Sub(b.Queued)) + ")"
	}
	return u.State
}

// isUp reports whether a state has a running domain.
func isUp(state string) bool {
	switch state {
	case "", "stopped", "suspended", "saved", "failed":
		return false
	}
	return true
}

// shortDuration prints d to the second (to the millisecond under 10 s).
func shortDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < 10*time.Second {
		return d.Round(time.Millisecond).String()
	}
	if d >= 48*time.Hour {
		days := d / (24 * time.Hour)
		return fmt.Sprintf("%dd%s", days, (d - days*24*time.Hour).Round(time.Hour).String())
	}
	return d.Round(time.Second).String()
}

func runStart(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "start", "NAME")
	f := addCtlFlags(fs)
	pos, code, ok := parsePositional(env, fs, args, 1)
	if !ok {
		return code
	}
	return ctlOp(ctx, env, f, "started "+pos[0], func(ctx context.Context, c *control.Client) error {
		return c.Start(ctx, pos[0])
	})
}

func runStop(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "stop", "NAME")
	f := addCtlFlags(fs)
	mode := fs.String("mode", "", "destroy, shutdown, suspend or save (default: the unikernel's stop_mode)")
	pos, code, ok := parsePositional(env, fs, args, 1)
	if !ok {
		return code
	}
	if *mode != "" {
		if _, err := hypervisor.ParseStopMode(*mode); err != nil {
			fmt.Fprintf(env.stderr, "jitsu stop: unknown --mode %q (want %v)\n", *mode, hypervisor.StopModes)
			return exitUsage
		}
	}
	done := "stopped " + pos[0]
	if *mode != "" {
		done += " (" + *mode + ")"
	}
	return ctlOp(ctx, env, f, done, func(ctx context.Context, c *control.Client) error {
		return c.Stop(ctx, pos[0], *mode)
	})
}

func runReload(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "reload", "")
	f := addCtlFlags(fs)
	if _, code, ok := parsePositional(env, fs, args, 0); !ok {
		return code
	}
	return ctlOp(ctx, env, f, "reloaded", func(ctx context.Context, c *control.Client) error {
		return c.Reload(ctx)
	})
}

// ctlOp runs one request against the daemon and reports it.
func ctlOp(ctx context.Context, env *cliEnv, f *ctlFlags, done string, op func(context.Context, *control.Client) error) int {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	c, code := dialDaemon(ctx, env, f)
	if c == nil {
		return code
	}
	defer c.Close()
	if err := op(ctx, c); err != nil {
		return fail(env, f, err)
	}
	if f.json {
		writeJSON(env, opResult{OK: true})
	} else {
		fmt.Fprintln(env.stdout, done)
	}
	return exitOK
}

func runDoctor(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "doctor", "")
	path := fs.String("config", defaultConfig, "config file whose host requirements to check")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	skipProbe := fs.Bool("skip-probe", false, "skip the KVM probe boot")
	probeTimeout := fs.Duration("probe-timeout", doctor.DefaultProbeTimeout, "how long the KVM probe boot may take")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "jitsu doctor: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(env, err)
		return exitUsage
	}
	opts := doctor.Options{SkipProbe: *skipProbe, ProbeTimeout: *probeTimeout}
	if !*asJSON {
		opts.Out = env.stdout
	}
	rep := doctor.Run(ctx, cfg, opts)
	if *asJSON {
		writeJSON(env, struct {
			OK bool `json:"ok"`
			doctor.Report
		}{rep.OK(), rep})
	} else if n := len(rep.Failed()); n > 0 {
		fmt.Fprintf(env.stdout, "\n%d check(s) failed\n", n)
	} else {
		fmt.Fprintln(env.stdout, "\nall checks passed")
	}
	if !rep.OK() {
		return exitFail
	}
	return exitOK
}
