// Command coldstart measures what a user of jitsu feels: the time from a
// DNS query for a stopped unikernel to the first byte of its HTTP answer,
// with the real jitsu binary, a private libvirtd in a network namespace
// (internal/sandbox) and the example unikernel under QEMU, against the
// boot floor: the same domain started without jitsu.
//
// The cases run interleaved: every round measures each case once, in an
// order rotated from round to round, so that drift of the machine (other
// load, caches) falls on every case alike. Every case boots the same
// domain (same name, kernel file, initrd, command line, memory, MAC: the
// floor's hypervisor.Spec is built from the very config jitsu runs with).
// Each jitsu sample starts a fresh jitsu serve with the case's config and
// stops it after the sample. The report gives each case's median, p90,
// min and max, and the paired differences per round (case minus boot
// floor, case minus jitsu with the SYN proxy): their median and p90; each
// case's median over proxy's (the boot path); and what the unikernel cost
// while it waited for its query (the RSS of its QEMU: a warm pool's paused
// domain, a suspended guest, none when stopped).
//
// With -image multiboot every case boots the multiboot example
// (examples/multiboot, hello.elf) instead: no network, no HTTP. Its "first
// byte" is the JITSU-READY line on its serial console, the first thing the
// guest does, seen by the benchmark polling the console log every 5 ms
// (jitsu's own readiness probe for it is console:JITSU-READY). Only the
// cases where the guest runs from its start after the query apply: floor,
// proxy (the boot path), delay (the DNS answer held until jitsu saw the
// marker) and warm; a suspended or restored guest has already printed its
// marker and halted, so there is nothing to see after a resume.
//
// A case is one entry of the cases table below. It needs root and `make
// build image`. Usage:
//
//	coldstart [-n 10] [-jitsu bin/jitsu] [-domain-type qemu|kvm] [-image example|multiboot] [-cases floor,proxy,...]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jitsu-unikernel/jitsu/bench/internal/benchkit"
	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/hypervisor/libvirt"
	"github.com/jitsu-unikernel/jitsu/internal/sandbox"
)

const (
	guestIP = "10.213.0.5"
	name    = "www.example.test."
)

// benchCase is one way from a stopped unikernel to its first HTTP byte.
type benchCase struct {
	key   string // short name, for -cases and the difference rows
	label string
	// conf adapts the jitsu config of the case; nil: no jitsu runs.
	conf func(*sandbox.JitsuConfig)
	// sample measures one cold start.
	sample func(ctx context.Context, b *bench, c *benchCase) (sample, error)
	// idle is the state jitsu reports for the unikernel once it answers,
	// and again after the sample's stop; "" means stopped.
	idle string
	// prepare brings the unikernel into the state it waits for its query
	// in, unmeasured, once jitsu answers; nil: nothing to do (stopped, or
	// warm: jitsu prepares the warm domain itself).
	prepare func(ctx context.Context, b *bench) error
	// confPath is the case's jitsu config, written at start-up.
	confPath string
	// startIdle, if set, is the state jitsu reports for the unikernel
	// when it starts, if that is not idle (warmsnap before its save file
	// exists).
	startIdle func(b *bench) string
}

// sample is one measurement: the time to the first byte and what the
// client had to do.
type sample struct {
	d       time.Duration
	retries int    // refused connects retried
	note    string // jitsu's boot timeline, for the log
	// rssKiB is the RSS of the domain's QEMU process just before the
	// query: what the idle unikernel costs (0: no process, stopped).
	rssKiB int
}

// cases is every case, in the order of the report. Add a case here.
var cases = []*benchCase{
	{key: "floor", label: "boot floor: start call to first HTTP byte, no jitsu", sample: floorSample},
	{key: "proxy", label: "jitsu, SYN proxy: query, then GET at once",
		conf:   func(c *sandbox.JitsuConfig) { c.SynProxy, c.ResponseDelay = true, "0s" },
		sample: jitsuSample(queryThenGet)},
	{key: "noproxy", label: "jitsu, no SYN proxy: query, GET at once, refused connects retried",
		conf:   func(c *sandbox.JitsuConfig) { c.SynProxy, c.ResponseDelay = false, "0s" },
		sample: jitsuSample(queryThenGet)},
	{key: "delay", label: "jitsu, no SYN proxy, DNS answer held until ready (response delay)",
		conf:   func(c *sandbox.JitsuConfig) { c.SynProxy, c.ResponseDelay = false, "10s" },
		sample: jitsuSample(queryThenGet)},
	{key: "cached", label: "jitsu, SYN proxy: GET a cached address, no DNS (the SYN summons)",
		conf:   func(c *sandbox.JitsuConfig) { c.SynProxy, c.ResponseDelay = true, "0s" },
		sample: jitsuSample(getCached)},
	{key: "warm", label: "jitsu, SYN proxy, warm = true: query, then GET (resume of the warm pool's paused domain)",
		conf: func(c *sandbox.JitsuConfig) {
			c.SynProxy, c.ResponseDelay = true, "0s"
			c.Unikernels[0].Warm = true
		},
		idle: "warm", sample: jitsuSample(queryThenGet)},
	{key: "resume", label: "jitsu, SYN proxy, stop mode suspend: query, then GET (resume of the suspended guest)",
		conf: func(c *sandbox.JitsuConfig) {
			c.SynProxy, c.ResponseDelay = true, "0s"
			c.Unikernels[0].StopMode = "suspend"
		},
		prepare: bootAndSuspend, sample: jitsuSample(queryThenGet)},
	{key: "snapshot", label: "jitsu, SYN proxy, start = snapshot: query, then GET (restore of the save file made by its first boot)",
		conf: func(c *sandbox.JitsuConfig) {
			c.SynProxy, c.ResponseDelay = true, "0s"
			c.Unikernels[0].Start, c.SnapshotDir = "snapshot", filepath.Join(c.ConsoleDir, "snapshot")
		},
		prepare: bootAndStop, sample: jitsuSample(queryThenGet)},
	{key: "warmsnap", label: "jitsu, SYN proxy, warm = true, start = snapshot: query, then GET (resume of the save file restored paused)",
		conf: func(c *sandbox.JitsuConfig) {
			c.SynProxy, c.ResponseDelay = true, "0s"
			c.Unikernels[0].Warm = true
			c.Unikernels[0].Start, c.SnapshotDir = "snapshot", filepath.Join(c.ConsoleDir, "warmsnap")
		},
		idle: "warm", startIdle: warmSnapStart, prepare: warmSnapPrepare, sample: jitsuSample(queryThenGet)},
}

// References of the paired differences.
var refs = []string{"floor", "proxy"}

func main() {
	n := flag.Int("n", 10, "rounds (each measures every case once)")
	bin := flag.String("jitsu", "bin/jitsu", "the jitsu binary")
	domainType := flag.String("domain-type", "qemu", "libvirt domain type: qemu (TCG) or kvm")
	only := flag.String("cases", "", "comma-separated case keys to run (default: all that apply to the image)")
	image := flag.String("image", "example", "what every case boots: example (the example unikernel, first HTTP byte) or multiboot ("+multibootImage+", JITSU-READY on the console)")
	flag.Parse()
	benchkit.Main("coldstart", func(ctx context.Context) error { return run(ctx, *n, *bin, *domainType, *image, *only) })
}

// bench is the state shared by every sample.
type bench struct {
	env     *sandbox.Env
	bin     string
	dir     string
	socket  string
	spec    hypervisor.Spec
	hv      *libvirt.Hypervisor
	samples map[string][]sample
	// multiboot: every case boots multibootImage and its first byte is
	// the console marker.
	multiboot bool
}

// multibootImage is the multiboot example, built by make image-multiboot.
const multibootImage = "/var/lib/jitsu/images/multiboot/hello.elf"

// multibootCases are the cases that apply to the multiboot example: those
// whose guest runs from its first instruction after the query.
var multibootCases = []string{"floor", "proxy", "delay", "warm"}

// multibootLabels are their labels for the multiboot example, whose first
// byte is the console marker (the cases table's labels say HTTP).
var multibootLabels = map[string]string{
	"floor": "boot floor: start call to JITSU-READY, no jitsu",
	"proxy": "jitsu (SYN proxy on, nothing to hold): query, then JITSU-READY (the boot path)",
	"delay": "jitsu, DNS answer held until jitsu's console probe saw JITSU-READY (response delay)",
	"warm":  "jitsu, warm = true: query, then JITSU-READY (resume of the warm pool's paused domain)",
}

func run(ctx context.Context, n int, bin, domainType, image, only string) (err error) {
	if image != "example" && image != "multiboot" {
		return fmt.Errorf("-image %q: want example or multiboot", image)
	}
	selected, err := selectCases(only, image == "multiboot")
	if err != nil {
		return err
	}
	if image == "multiboot" {
		if _, err := os.Stat(multibootImage); err != nil {
			return fmt.Errorf("-image multiboot: %w (make image-multiboot)", err)
		}
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	host, err := benchkit.StartHost(ctx, "coldstart-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, host.Close()) }()
	img := host.Image
	b := &bench{env: host.Env, bin: bin, dir: host.Dir, socket: filepath.Join(host.Dir, "control.sock"),
		hv: host.HV, samples: map[string][]sample{}, multiboot: image == "multiboot"}
	if err := b.writeConfigs(selected, img, domainType); err != nil {
		return err
	}
	// One unmeasured boot first: libvirtd probes QEMU's capabilities on
	// its first domain start (seconds here), and the image's files come
	// into the page cache; neither belongs to the first case measured.
	if w, err := floorSample(ctx, b, nil); err != nil {
		return fmt.Errorf("warm-up boot: %w", err)
	} else {
		log.Printf("  warm-up boot (not counted): %s", benchkit.MS(w.d))
	}
	for r := range n {
		// Rotate the order, so that no case always follows the same one.
		for i := range selected {
			c := selected[(r+i)%len(selected)]
			s, err := c.sample(ctx, b, c)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, c.key, err)
			}
			b.samples[c.key] = append(b.samples[c.key], s)
			log.Printf("  round %2d %-8s %s%s", r+1, c.key, benchkit.MS(s.d), s.note)
		}
	}
	b.report(selected, n, img, domainType)
	return nil
}

// selectCases returns the cases named in only (comma-separated), or every
// case when only is empty; for the multiboot example only those in
// multibootCases.
func selectCases(only string, multiboot bool) ([]*benchCase, error) {
	applies := func(k string) bool { return !multiboot || slices.Contains(multibootCases, k) }
	if only == "" {
		var out []*benchCase
		for _, c := range cases {
			if applies(c.key) {
				out = append(out, c)
			}
		}
		return out, nil
	}
	var out []*benchCase
	for _, k := range strings.Split(only, ",") {
		i := slices.IndexFunc(cases, func(c *benchCase) bool { return c.key == k })
		if i < 0 {
			return nil, fmt.Errorf("-cases: no case %q", k)
		}
		if !applies(k) {
			return nil, fmt.Errorf("-cases: %q does not apply to the multiboot example (its cases: %s)", k, strings.Join(multibootCases, ","))
		}
		out = append(out, cases[i])
	}
	return out, nil
}

// writeConfigs writes each jitsu case's config, and derives the floor's
// domain from the first one (the cases differ in jitsu's settings only).
func (b *bench) writeConfigs(selected []*benchCase, img sandbox.Image, domainType string) error {
	base := sandbox.JitsuConfig{
		ConsoleDir: b.dir, Socket: b.socket, Image: img, DomainType: domainType,
		// A boot timeout no loaded machine reaches: a sample must not fail
		// for being slow (the floor has none).
		Unikernels: []sandbox.JitsuUnikernel{{Name: "www", IP: guestIP, IdleTimeout: "0s", BootTimeout: "120s"}},
	}
	if b.multiboot {
		// No initrd; ready when the marker is on the console. The command
		// line (the example's, with ip=) is passed and ignored.
		u := &base.Unikernels[0]
		u.Kernel, u.Initrd, u.Ready = multibootImage, "", "console:"+marker
	}
	specConf := filepath.Join(b.dir, "base.toml")
	if err := base.Write(specConf); err != nil {
		return err
	}
	for _, c := range selected {
		if c.conf == nil {
			continue
		}
		data := base
		data.Unikernels = slices.Clone(base.Unikernels)
		c.conf(&data)
		c.confPath = filepath.Join(b.dir, c.key+".toml")
		if err := data.Write(c.confPath); err != nil {
			return err
		}
	}
	cfg, err := config.Load(specConf)
	if err != nil {
		return fmt.Errorf("load the benchmark's config: %w", err)
	}
	b.spec, err = benchkit.Spec(cfg, "www")
	return err
}

// report prints every case's distribution and the paired differences.
func (b *bench) report(selected []*benchCase, n int, img sandbox.Image, domainType string) {
	if b.multiboot {
		fmt.Printf("\ncold start to %s on the serial console (the first byte of the multiboot example), %d interleaved rounds (domain type %s, %s, no initrd, %d MiB)\n",
			marker, n, domainType, b.spec.Kernel, b.spec.MemoryBytes>>20)
	} else {
		fmt.Printf("\ncold start to first HTTP byte, %d interleaved rounds (domain type %s, %s, %s, %d MiB)\n",
			n, domainType, img.BootKernel(), img.Initrd, b.spec.MemoryBytes>>20)
	}
	fmt.Printf("%-8s %9s %9s %9s %9s  %s\n", "case", "median", "p90", "min", "max", "")
	for _, c := range selected {
		ss := b.samples[c.key]
		s := benchkit.Summarize(durations(ss))
		note, retries := "", 0
		for _, x := range ss {
			retries += x.retries
		}
		if retries > 0 {
			note = fmt.Sprintf(" (%d refused connects retried)", retries)
		}
		label := c.label
		if l, ok := multibootLabels[c.key]; ok && b.multiboot {
			label = l
		}
		fmt.Printf("%-8s %9s %9s %9s %9s  %s%s\n", c.key, benchkit.MS(s.Median), benchkit.MS(s.P90),
			benchkit.MS(s.Min), benchkit.MS(s.Max), label, note)
	}
	b.reportMemory(selected)
	for ri, ref := range refs {
		rs, ok := b.samples[ref]
		if !ok {
			continue
		}
		fmt.Printf("\npaired differences per round, case minus %s:\n", ref)
		fmt.Printf("%-8s %9s %9s %9s %9s\n", "case", "median", "p90", "min", "max")
		for _, c := range selected {
			cs := b.samples[c.key]
			// A reference already compared against an earlier one
			// gives no new row.
			if i := slices.Index(refs, c.key); i >= 0 && i <= ri || len(cs) != len(rs) {
				continue
			}
			s := benchkit.Summarize(paired(cs, rs))
			fmt.Printf("%-8s %9s %9s %9s %9s\n", c.key, benchkit.MS(s.Median), benchkit.MS(s.P90), benchkit.MS(s.Min), benchkit.MS(s.Max))
		}
	}
	b.reportRatios(selected)
}

// reportRatios prints each case's median over the boot path's (proxy):
// the goal for the warm pool is at most 0.5.
func (b *bench) reportRatios(selected []*benchCase) {
	ref := benchkit.Summarize(durations(b.samples["proxy"])).Median
	if ref == 0 {
		return
	}
	fmt.Printf("\nmedian over proxy's median (the boot path):\n")
	for _, c := range selected {
		if c.key == "proxy" {
			continue
		}
		m := benchkit.Summarize(durations(b.samples[c.key])).Median
		fmt.Printf("%-8s %5.2f×\n", c.key, float64(m)/float64(ref))
	}
}

// reportMemory prints what each case's unikernel cost while it waited
// for its query: the RSS of its QEMU process just before the query.
func (b *bench) reportMemory(selected []*benchCase) {
	fmt.Printf("\nmemory per idle unikernel, RSS of its QEMU process just before the query:\n")
	fmt.Printf("%-8s %9s %9s %9s\n", "case", "median", "min", "max")
	for _, c := range selected {
		if c.conf == nil {
			continue // the floor: no jitsu, nothing waits
		}
		fmt.Printf("%-8s %s\n", c.key, rssRow(b.samples[c.key]))
	}
	if snapshotBytes > 0 {
		fmt.Printf("snapshot: no process while it waits; its save file takes %.1f MiB of disk\n", float64(snapshotBytes)/(1<<20))
	}
}

// rssRow formats the median, min and max RSS of ss in MiB, or says that
// no QEMU process ran.
func rssRow(ss []sample) string {
	kib := make([]time.Duration, 0, len(ss)) // Summarize sorts durations; KiB here
	for _, s := range ss {
		kib = append(kib, time.Duration(s.rssKiB))
	}
	st := benchkit.Summarize(kib)
	if st.Max == 0 {
		return fmt.Sprintf("%9s %9s %9s  (no QEMU process: nothing kept)", "0", "0", "0")
	}
	mib := func(d time.Duration) string { return fmt.Sprintf("%.1f MiB", float64(d)/1024) }
	return fmt.Sprintf("%9s %9s %9s", mib(st.Median), mib(st.Min), mib(st.Max))
}

// paired returns, round by round, the case's sample minus the reference's.
func paired(cs, rs []sample) []time.Duration {
	out := make([]time.Duration, min(len(cs), len(rs)))
	for i := range out {
		out[i] = cs[i].d - rs[i].d
	}
	return out
}

func durations(ss []sample) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = s.d
	}
	return out
}
