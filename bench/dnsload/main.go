// Command dnsload measures jitsu's DNS latency for a static name while
// guests burn every core, with the guests' QEMU processes at an equal CPU
// weight ("flat": where libvirt left them, each its own scheduling
// entity) and in jitsu's guest cgroup at the weight of
// hypervisor.guest_cpu_weight ("weighted", package guestcpu), and
// each QEMU reniced to 19, threads and autogroup ("nice": the other way
// without cgroups, which guestcpu does not take: it makes the tail
// worse), the cases interleaved round by round (order rotated).
//
// It needs root and runs its own sandbox (a private libvirtd in a network
// namespace, under the machine-wide lock): it starts bin/jitsu serve
// there with one zone, creates -guests domains booting a multiboot kernel
// that spins forever (examples/multiboot/hello.S with its halt loop
// turned into a busy loop), and in each round, for each case in turn,
// moves the QEMU processes, waits a second, and sends -queries queries
// one after the other (-gap apart) over loopback inside the namespace. It
// prints p50 and p99 per case, the per-round paired differences, and the
// cores the guests used in each case (utime+stime of their QEMUs).
//
// The client's own wake-ups suffer from the load too: its session's
// autogroup is given nice -19 in both cases, so that what differs is
// jitsu's (started in a session of its own).
//
//	go run ./bench/dnsload -jitsu bin/jitsu -guests 12 -rounds 6
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/bench/internal/benchkit"
	"github.com/jitsu-unikernel/jitsu/guestcpu"
	"github.com/jitsu-unikernel/jitsu/internal/sandbox"
)

type opts struct {
	jitsu           string
	guests, rounds  int
	queries, weight int
	gap             time.Duration
	helloS, ld      string
}

func main() {
	var o opts
	flag.StringVar(&o.jitsu, "jitsu", "bin/jitsu", "the jitsu binary")
	flag.IntVar(&o.guests, "guests", 12, "spinning guests")
	flag.IntVar(&o.rounds, "rounds", 6, "rounds (each case once per round)")
	flag.IntVar(&o.queries, "queries", 300, "queries per case and round")
	flag.IntVar(&o.weight, "weight", 10, "the guests' CPU weight in the weighted case (cgroup v2 scale)")
	flag.DurationVar(&o.gap, "gap", 10*time.Millisecond, "pause between queries")
	flag.StringVar(&o.helloS, "hello", "examples/multiboot/hello.S", "the multiboot source the spinner is made from")
	flag.StringVar(&o.ld, "ld", "examples/multiboot/hello.ld", "its linker script")
	flag.Parse()
	benchkit.Main("dnsload", func(ctx context.Context) error { return run(ctx, o) })
}

func run(ctx context.Context, o opts) error {
	dir, remove, err := benchkit.WorkDir("dnsload-")
	if err != nil {
		return err
	}
	defer remove()
	kernel, err := buildSpinner(ctx, dir, o)
	if err != nil {
		return err
	}
	env, err := sandbox.Start(ctx, sandbox.Options{Logf: func(f string, a ...any) { log.Printf("sandbox: "+f, a...) }})
	if err != nil {
		return fmt.Errorf("start sandbox: %w", err)
	}
	defer env.Close()
	stop, err := startJitsu(ctx, env, dir, o.jitsu)
	if err != nil {
		return err
	}
	defer stop()
	conn, err := dialDNS(env)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := waitDNS(ctx, conn); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "jitsu.log"))
		return fmt.Errorf("%w; jitsu's log:\n%s", err, b)
	}
	_ = os.WriteFile("/proc/self/autogroup", []byte("-19"), 0)
	idle := measure(conn, o.queries, o.gap)
	fmt.Printf("no guests: p50 %s p99 %s\n", us(pct(idle, 50)), us(pct(idle, 99)))
	pids, err := startGuests(ctx, env, dir, kernel, o.guests)
	defer destroyGuests(env, o.guests)
	if err != nil {
		return err
	}
	w, err := guestcpu.New(guestcpu.Options{Weight: o.weight, Group: "jitsu-dnsload"})
	if err != nil {
		return err
	}
	if w.Dir() == "" {
		return errors.New("no cgroup cpu controller: nothing to compare")
	}
	err = rounds(ctx, o, conn, w, pids)
	return errors.Join(err, place(w, pids, "flat", o.weight), os.Remove(w.Dir()))
}

// buildSpinner assembles hello.S with its halt loop made a busy loop.
func buildSpinner(ctx context.Context, dir string, o opts) (string, error) {
	src, err := os.ReadFile(o.helloS)
	if err != nil {
		return "", err
	}
	spin := strings.Replace(string(src), "2:\thlt", "2:\tpause", 1)
	if spin == string(src) {
		return "", fmt.Errorf("%s: no halt loop (\"2:\\thlt\") to turn into a busy loop", o.helloS)
	}
	s, obj, elf := filepath.Join(dir, "spin.S"), filepath.Join(dir, "spin.o"), filepath.Join(dir, "spin.elf")
	if err := os.WriteFile(s, []byte(spin), 0o644); err != nil {
		return "", err
	}
	for _, c := range [][]string{{"as", "--32", "-o", obj, s}, {"ld", "-m", "elf_i386", "-T", o.ld, "-o", elf, obj}} {
		if out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("%s: %w: %s", c[0], err, out)
		}
	}
	return elf, os.Chmod(elf, 0o644)
}

const dnsAddr = "127.0.0.1:5353"

// startJitsu runs jitsu serve in the sandbox's namespace, in a session
// of its own (its own autogroup), with no unikernel: it only answers.
func startJitsu(ctx context.Context, env *sandbox.Env, dir, bin string) (stop func(), err error) {
	conf := filepath.Join(dir, "jitsu.toml")
	img, err := sandbox.FindExampleImage() // [defaults] needs a kernel; nothing boots it
	if err != nil {
		return nil, err
	}
	c := sandbox.JitsuConfig{ConsoleDir: dir, Socket: filepath.Join(dir, "control.sock"), Image: img}
	if err := c.Write(conf); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	cmd := env.Command(context.Background(), abs, "serve", "-config", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	logf, err := os.Create(filepath.Join(dir, "jitsu.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start jitsu: %w", err)
	}
	return func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	}, nil
}

// dialDNS opens a UDP socket to jitsu inside the sandbox's namespace.
func dialDNS(env *sandbox.Env) (*dns.Conn, error) {
	var conn *dns.Conn
	err := env.Do(func() error {
		var err error
		conn, err = dns.Dial("udp", dnsAddr)
		return err
	})
	return conn, err
}

func query(conn *dns.Conn) (time.Duration, error) {
	m := new(dns.Msg)
	m.SetQuestion("static.example.test.", dns.TypeA)
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	t0 := time.Now()
	if err := conn.WriteMsg(m); err != nil {
		return 0, err
	}
	r, err := conn.ReadMsg()
	d := time.Since(t0)
	if err == nil && (r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0) {
		err = fmt.Errorf("answer %s with %d records", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	return d, err
}

func waitDNS(ctx context.Context, conn *dns.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		if _, err := query(conn); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("jitsu never answered: %w", ctx.Err())
}

// measure sends n queries, gap apart; a lost one counts as 2 s.
func measure(conn *dns.Conn, n int, gap time.Duration) []time.Duration {
	out := make([]time.Duration, 0, n)
	for range n {
		d, err := query(conn)
		if err != nil {
			d = 2 * time.Second
		}
		out = append(out, d)
		time.Sleep(gap)
	}
	return out
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, (len(s)*p+99)/100-1)]
}

func us(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func domName(i int) string { return fmt.Sprintf("dnsload-spin%d", i) }

// startGuests creates n spinning domains and returns their QEMU pids.
func startGuests(ctx context.Context, env *sandbox.Env, dir, kernel string, n int) ([]int, error) {
	names := map[string]bool{}
	for i := range n {
		xml := fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>16</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>%s</kernel></os>
<devices><serial type='null'/></devices></domain>`, domName(i), kernel)
		f := filepath.Join(dir, domName(i)+".xml")
		if err := os.WriteFile(f, []byte(xml), 0o644); err != nil {
			return nil, err
		}
		if out, err := exec.CommandContext(ctx, "virsh", "-c", env.URI, "create", f).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("virsh create: %w: %s", err, out)
		}
		names[domName(i)] = true
	}
	found := guestcpu.QEMUPids("/proc", names)
	pids := make([]int, 0, len(found))
	for _, p := range found {
		pids = append(pids, p)
	}
	if len(pids) != n {
		return pids, fmt.Errorf("found %d QEMU processes, want %d", len(pids), n)
	}
	groups := map[string]bool{}
	for _, p := range pids {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/autogroup", p))
		c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p))
		groups[strings.Fields(string(b) + " ?")[0]+" cgroup "+cpuLine(string(c))] = true
	}
	fmt.Printf("%d guests started; their autogroups and cpu cgroups: %d distinct %v\n", n, len(groups), slices.Sorted(maps.Keys(groups))[:1])
	return pids, nil
}

func cpuLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, ":cpu,") || strings.Contains(l, ":cpu:") {
			return l
		}
	}
	return "none"
}

func destroyGuests(env *sandbox.Env, n int) {
	for i := range n {
		_ = exec.Command("virsh", "-c", env.URI, "destroy", domName(i)).Run()
	}
}

// cpuTicks is the utime+stime of pids, in clock ticks.
func cpuTicks(pids []int) int64 {
	var sum int64
	for _, p := range pids {
		if t, err := benchkit.ProcTicks(p); err == nil { // gone: not counted
			sum += int64(t)
		}
	}
	return sum
}

// place puts every pid in the guests' cgroup (weighted), or back in the
// root cgroup at nice 0 (flat), or there at the nice fallback's value.
func place(w *guestcpu.Weigher, pids []int, c string, weight int) error {
	root := filepath.Dir(w.Dir())
	for _, p := range pids {
		var err error
		switch c {
		case "weighted":
			err = errors.Join(renice("/proc", p, 0), w.Place(p))
		case "nice":
			err = errors.Join(w.Move(p, root), renice("/proc", p, 19))
		default:
			err = errors.Join(w.Move(p, root), renice("/proc", p, 0))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

type sample struct {
	p50, p99 time.Duration
	cores    float64
}

// rounds runs the interleaved rounds and prints the figures.
func rounds(ctx context.Context, o opts, conn *dns.Conn, w *guestcpu.Weigher, pids []int) error {
	cases := []string{"flat", "weighted", "nice"}
	got := map[string][]sample{}
	for r := range o.rounds {
		order := append(slices.Clone(cases[r%3:]), cases[:r%3]...)
		for _, c := range order {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := place(w, pids, c, o.weight); err != nil {
				return err
			}
			time.Sleep(time.Second)
			t0, c0 := time.Now(), cpuTicks(pids)
			ds := measure(conn, o.queries, o.gap)
			cores := float64(cpuTicks(pids)-c0) / 100 / time.Since(t0).Seconds()
			s := sample{pct(ds, 50), pct(ds, 99), cores}
			got[c] = append(got[c], s)
			fmt.Printf("round %d %-8s p50 %s p99 %s guests %.2f cores\n", r+1, c, us(s.p50), us(s.p99), s.cores)
		}
	}
	report(got, o)
	return nil
}

func report(got map[string][]sample, o opts) {
	fmt.Printf("\n%d guests spinning, %d rounds of %d queries per case (%s apart), weight %d:\n",
		o.guests, o.rounds, o.queries, o.gap, o.weight)
	for _, c := range []string{"flat", "weighted", "nice"} {
		var p50, p99 []time.Duration
		var cores float64
		for _, s := range got[c] {
			p50, p99 = append(p50, s.p50), append(p99, s.p99)
			cores += s.cores
		}
		fmt.Printf("%-8s median of rounds: p50 %s p99 %s, guests %.2f cores\n", c,
			us(benchkit.Summarize(p50).Median), us(benchkit.Summarize(p99).Median), cores/float64(len(got[c])))
	}
	for _, c := range []string{"weighted", "nice"} {
		var d50, d99 []time.Duration
		for i := range got["flat"] {
			f, w := got["flat"][i], got[c][i]
			d50 = append(d50, f.p50-w.p50)
			d99 = append(d99, f.p99-w.p99)
		}
		fmt.Printf("paired (flat - %s), median of rounds: p50 %s, p99 %s (smallest: %s / %s)\n", c,
			us(benchkit.Summarize(d50).Median), us(benchkit.Summarize(d99).Median),
			us(benchkit.Summarize(d50).Min), us(benchkit.Summarize(d99).Min))
	}
}

// renice sets nice on every thread of pid and on its autogroup (what
// counts between sessions when autogroup is on).
func renice(proc string, pid, nice int) error {
	tasks, err := os.ReadDir(filepath.Join(proc, strconv.Itoa(pid), "task"))
	if err != nil {
		return fmt.Errorf("renice process %d: %w", pid, err)
	}
	var errs []error
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("renice thread %d: %w", tid, err))
		}
	}
	_ = os.WriteFile(filepath.Join(proc, strconv.Itoa(pid), "autogroup"), []byte(strconv.Itoa(nice)), 0)
	return errors.Join(errs...)
}
