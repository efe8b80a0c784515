package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jitsu-unikernel/jitsu/config"
)

// defaultConfig is where serve, check and doctor look without --config.
const defaultConfig = "/etc/jitsu/jitsu.toml"

func runCheck(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "check", "")
	path := fs.String("config", defaultConfig, "config file to validate")
	quiet := fs.Bool("quiet", false, "print nothing when the file is valid")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(env, err)
		return exitUsage
	}
	for _, w := range cfg.FitWarnings(config.HostResources()) {
		fmt.Fprintf(env.stderr, "%s: warning: %s\n", cfg.File, w)
	}
	if !*quiet {
		fmt.Fprintf(env.stdout, "%s: ok (%d zones, %d unikernels)\n", cfg.File, len(cfg.Zones), len(cfg.Unikernels))
	}
	return exitOK
}

// printConfigError prints every problem of an invalid config, one a line.
func printConfigError(env *cliEnv, err error) {
	var es *config.Errors
	if errors.As(err, &es) {
		for _, e := range es.List {
			fmt.Fprintln(env.stderr, e.Error())
		}
		fmt.Fprintf(env.stderr, "%d error(s); nothing started\n", len(es.List))
		return
	}
	fmt.Fprintf(env.stderr, "jitsu: %v\n", err)
}
