// Command jitsu is an authoritative DNS server that summons unikernels:
// a query for a configured name boots that unikernel through libvirt,
// answers at once, holds the client's first TCP SYNs until the VM is ready,
// and stops the VM again when it has been idle.
//
// Usage:
//
//	jitsu serve   --config FILE   run the daemon
//	jitsu check   --config FILE   validate a config file
//	jitsu doctor  --config FILE   check the host can run jitsu
//	jitsu status                  list unikernels of a running daemon
//	jitsu start NAME              boot a unikernel now
//	jitsu stop NAME [--mode M]    stop a unikernel now
//	jitsu reload                  re-read the daemon's config
//	jitsu version                 print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // runtime failure
	exitUsage = 2 // bad usage or invalid config
)

// command is one subcommand of the CLI.
type command struct {
	summary string
	// run parses args with fs (already holding the common flags) and runs.
	run func(ctx context.Context, env *cliEnv, args []string) int
}

// cliEnv carries what every subcommand needs; tests swap the writers.
type cliEnv struct {
	stdout, stderr io.Writer
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"serve":   {"run the DNS server and summon unikernels", runServe},
		"check":   {"validate a config file and print every error", runCheck},
		"doctor":  {"check that this host can run jitsu, with a fix for each failure", runDoctor},
		"status":  {"list the unikernels of a running daemon", runStatus},
		"start":   {"boot a unikernel now", runStart},
		"stop":    {"stop a unikernel now", runStop},
		"reload":  {"make a running daemon re-read its config", runReload},
		"version": {"print the version", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &cliEnv{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if args[0] == "--version" || args[0] == "-version" {
		args[0] = "version"
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "jitsu: unknown command %q\n\n", args[0])
		usage(env.stderr)
		return exitUsage
	}
	return c.run(ctx, env, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "jitsu %s: an authoritative DNS server that summons unikernels\n\nUsage: jitsu COMMAND [flags]\n\nCommands:\n", version)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'jitsu COMMAND --help' for a command's flags.\n")
}

// newFlagSet returns a flag set for a subcommand that prints its usage on
// --help and reports errors to env.stderr.
func newFlagSet(env *cliEnv, name, argsUsage string) *flag.FlagSet {
	fs := flag.NewFlagSet("jitsu "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: jitsu %s [flags] %s\n\n%s\n\nFlags:\n", name, argsUsage, commands[name].summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and maps --help to exit 0 and errors to exit 2.
// It returns ok=false with the exit code when the command must not run.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			return exitOK, false
		}
		return exitUsage, false
	}
	return exitOK, true
}

func runVersion(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "version", "")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	fmt.Fprintf(env.stdout, "jitsu %s\n", version)
	return exitOK
}
