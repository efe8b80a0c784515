// Command jitsu-sandbox gives scripts (the demos, the boot benchmarks) the
// one sandbox of internal/sandbox: a private libvirtd inside a network
// namespace with jitsu's bridge, under the machine-wide libvirtd lock.
//
//	jitsu-sandbox run [-ns NAME] [-client NAME] [-in] [-wait 10m] -- CMD [ARGS...]
//	jitsu-sandbox clean
//
// run takes the lock (waiting up to -wait), removes what a dead sandbox
// left, creates the namespace, the bridge (and with -client a client
// namespace linked to it), starts virtlogd and libvirtd inside, runs CMD,
// and removes everything again when CMD exits, fails, or when
// jitsu-sandbox gets SIGINT, SIGTERM or SIGHUP (passed on to CMD first).
// It exits with CMD's status. CMD runs in the caller's namespace, or inside
// the sandbox's with -in, and finds the sandbox in its environment:
//
//	JITSU_SANDBOX_NS          the host namespace (bridge, libvirtd)
//	JITSU_SANDBOX_CLIENT_NS   the client namespace ("" without -client)
//	JITSU_SANDBOX_URI         libvirt URI
//	JITSU_SANDBOX_BRIDGE      bridge name
//	JITSU_SANDBOX_GATEWAY     bridge address (CIDR)
//	JITSU_SANDBOX_HOST_ADDR   host end of the client link (CIDR)
//	JITSU_SANDBOX_CLIENT_ADDR client end of the client link (CIDR)
//	JITSU_SANDBOX_LIBVIRTD_PID
//
// clean removes what sandboxes killed with SIGKILL left (their state is in
// /run/jitsu-sandbox); run does the same before it starts. It needs root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jitsu-unikernel/jitsu/internal/sandbox"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("jitsu-sandbox: ")
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "run":
		os.Exit(runCmd(os.Args[2:]))
	case "clean":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := sandbox.Clean(ctx, log.Printf); err != nil {
			log.Fatalf("clean: %v", err)
		}
	case "-h", "-help", "--help", "help":
		usage()
	default:
		log.Printf("unknown command %q", os.Args[1])
		usage()
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  jitsu-sandbox run [-ns NAME] [-client NAME] [-in] [-wait DURATION] [-q] -- CMD [ARGS...]
  jitsu-sandbox clean
`)
	os.Exit(2)
}

// runCmd is `jitsu-sandbox run`; it returns the exit status.
func runCmd(args []string) int {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	ns := fs.String("ns", "", "host namespace name (default jitsu-sb-PID)")
	client := fs.String("client", "", "also create a client namespace of this name")
	in := fs.Bool("in", false, "run CMD inside the host namespace")
	wait := fs.Duration("wait", 10*time.Minute, "how long to wait for "+sandbox.LockFile)
	quiet := fs.Bool("q", false, "do not print progress")
	_ = fs.Parse(args)
	if fs.NArg() == 0 {
		log.Print("run: no command given")
		usage()
	}
	logf := log.Printf
	if *quiet {
		logf = func(string, ...any) {}
	}
	// Signals are caught from here on: a Ctrl-C while setting up or
	// while CMD runs ends in the same cleanup.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithTimeout(context.Background(), *wait+2*time.Minute)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	env, err := sandbox.Start(ctx, sandbox.Options{NS: *ns, ClientNS: *client, Logf: logf})
	if err != nil {
		log.Printf("start: %v", err)
		return 1
	}
	cancel()
	code := runChild(env, fs.Args(), *in, sigs)
	if err := env.Close(); err != nil {
		log.Printf("cleanup: %v", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// runChild runs argv with the sandbox in its environment, passing on the
// signals jitsu-sandbox gets, and returns its exit status.
func runChild(env *sandbox.Env, argv []string, in bool, sigs <-chan os.Signal) int {
	var cmd *exec.Cmd
	if in {
		cmd = env.Command(context.Background(), argv[0], argv[1:]...)
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(),
		"JITSU_SANDBOX_NS="+env.NS,
		"JITSU_SANDBOX_CLIENT_NS="+env.ClientNS,
		"JITSU_SANDBOX_URI="+env.URI,
		"JITSU_SANDBOX_BRIDGE="+env.Bridge,
		"JITSU_SANDBOX_GATEWAY="+sandbox.GatewayCIDR,
		"JITSU_SANDBOX_HOST_ADDR="+sandbox.ClientHostCIDR,
		"JITSU_SANDBOX_CLIENT_ADDR="+sandbox.ClientCIDR,
		"JITSU_SANDBOX_LIBVIRTD_PID="+strconv.Itoa(env.LibvirtdPid()),
	)
	if err := cmd.Start(); err != nil {
		log.Printf("run %s: %v", argv[0], err)
		return 127
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		case s := <-sigs:
			// CMD in the same process group got a terminal's SIGINT
			// too; pass on what came to us alone, then give it time.
			_ = cmd.Process.Signal(s)
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				log.Printf("%s did not exit within 20 s of %v: killing it", argv[0], s)
				_ = cmd.Process.Kill()
				err = <-done
			}
			waiting = false
		}
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	default:
		log.Printf("%s: %v", argv[0], err)
		return 1
	}
}
