// Package guestcpu gives the QEMU processes of jitsu's guests a lower CPU
// weight than jitsu's own, so that jitsu's DNS answers stay fast while
// the guests use every core.
//
// With a cgroup cpu controller (v1: cpu.shares, v2: cpu.weight) a QEMU
// that libvirt left in jitsu's own cgroup (or the root one) is moved into
// a group of jitsu's, "jitsu-guests" at the top of the hierarchy, whose
// weight is Weight (v2 scale: 100 is everyone else's); all guests
// together then get Weight/(Weight+100) of the CPU when jitsu wants it
// too, and all of it when it does not. A QEMU that libvirt placed in a
// partition of its own (/machine, machine.slice) is left there and the
// weight is set on that partition instead. Without a cpu controller
// nothing is changed and a warning says so: renicing each QEMU instead
// was measured to make DNS's tail worse, not better (docs/benchmarks.md).
package guestcpu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Mechanisms, as Weigher.Mode reports them.
const (
	ModeCgroupV1 = "cgroup v1 (cpu.shares)"
	ModeCgroupV2 = "cgroup v2 (cpu.weight)"
	ModeNone     = "none (no cgroup cpu controller)"
	ModeOff      = "off"
)

// DefaultGroup is the cgroup jitsu creates for the guests.
const DefaultGroup = "jitsu-guests"

// Options configure a Weigher.
type Options struct {
	// Weight is the guests' CPU weight on the cgroup v2 scale (1 to
	// 10000, 100 = any other group's); 0 turns the Weigher off.
	Weight int
	// Group is the cgroup created for the guests; "" = DefaultGroup.
	Group string
	// Proc is the proc file system; "" = "/proc" (tests use a copy).
	Proc string
	// Logger; nil = none.
	Logger *zap.Logger
}

// Weigher places the QEMU processes of jitsu's domains. Create it with
// New; Place is safe for concurrent use.
type Weigher struct {
	opts  Options
	log   *zap.Logger
	mode  string
	mount string // the cpu controller's hierarchy (cgroup modes)
	self  string // jitsu's cgroup in it
	v2    bool

	mu        sync.Mutex
	weighted  map[string]bool // partitions (libvirt's) whose weight is set
	requests  chan string
	domainsMu sync.Mutex
	domains   map[string]bool // placed at every sweep
}

// New detects the cgroup cpu controller and prepares the guests' group.
// A host without one gets ModeNone and a warning; an error is
// returned only for a group that exists but cannot be set up.
func New(opts Options) (*Weigher, error) {
	if opts.Group == "" {
		opts.Group = DefaultGroup
	}
	if opts.Proc == "" {
		opts.Proc = "/proc"
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	w := &Weigher{opts: opts, log: opts.Logger, mode: ModeOff, weighted: map[string]bool{},
		requests: make(chan string, 256), domains: map[string]bool{}}
	if opts.Weight <= 0 {
		return w, nil
	}
	mount, v2 := findCPUController(filepath.Join(opts.Proc, "self/mountinfo"))
	if mount == "" {
		w.mode = ModeNone
		w.log.Warn("no cgroup cpu controller: the guests keep their CPU weight, and DNS answers may wait behind busy guests",
			zap.String("fix", "mount the cgroup cpu controller (v1 cpu, or v2 with cpu in cgroup.controllers)"))
		return w, nil
	}
	w.mount, w.v2 = mount, v2
	self, err := cgroupOf(opts.Proc, "self", v2)
	if err != nil {
		return nil, fmt.Errorf("guest cpu weight: %w", err)
	}
	w.self = self
	w.mode = ModeCgroupV1
	if v2 {
		w.mode = ModeCgroupV2
		// The root's children get the cpu controller (the root may hold
		// processes; no other cgroup may).
		_ = os.WriteFile(filepath.Join(mount, "cgroup.subtree_control"), []byte("+cpu"), 0)
	}
	dir := filepath.Join(mount, opts.Group)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("guest cpu weight: create cgroup %s: %w", dir, err)
	}
	if err := w.setWeight(dir); err != nil {
		return nil, fmt.Errorf("guest cpu weight: %w", err)
	}
	w.log.Info("guests get a lower CPU weight", zap.String("mechanism", w.mode), zap.String("cgroup", dir),
		zap.Int("weight", opts.Weight))
	return w, nil
}

// Detect reports the mechanism New would use for a non-zero weight and
// where (the cpu controller's mount point, "" for ModeNone),
// without changing anything; proc "" is "/proc".
func Detect(proc string) (mode, mount string) {
	if proc == "" {
		proc = "/proc"
	}
	mount, v2 := findCPUController(filepath.Join(proc, "self/mountinfo"))
	switch {
	case mount == "":
		return ModeNone, ""
	case v2:
		return ModeCgroupV2, mount
	}
	return ModeCgroupV1, mount
}

// Mode is the mechanism in use: ModeCgroupV1, ModeCgroupV2, ModeNone or
// ModeOff.
func (w *Weigher) Mode() string { return w.mode }

// Dir is the guests' cgroup directory, "" when no cgroup is used.
func (w *Weigher) Dir() string {
	if w.mount == "" {
		return ""
	}
	return filepath.Join(w.mount, w.opts.Group)
}

// setWeight writes the weight into the cgroup dir.
func (w *Weigher) setWeight(dir string) error {
	file, val := "cpu.shares", strconv.Itoa(max(2, w.opts.Weight*1024/100))
	if w.v2 {
		file, val = "cpu.weight", strconv.Itoa(w.opts.Weight)
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0); err != nil {
		return fmt.Errorf("set %s of %s: %w", file, dir, err)
	}
	return nil
}

// Started asks for the QEMU of domain to be placed (by Run); it never
// blocks. The summoner calls it once a domain's create call returned.
func (w *Weigher) Started(domain string) {
	if w.mode == ModeOff || w.mode == ModeNone {
		return
	}
	select {
	case w.requests <- domain:
	default: // full: the next sweep places it
	}
}

// SetDomains sets the domains whose QEMU every sweep places (the
// configured unikernels').
func (w *Weigher) SetDomains(names []string) {
	w.domainsMu.Lock()
	defer w.domainsMu.Unlock()
	w.domains = map[string]bool{}
	for _, n := range names {
		w.domains[n] = true
	}
}

// Run places the QEMU of each domain Started names, and every interval
// sweeps the domains of SetDomains (adopted, warm or missed ones), until
// ctx is done. Then it removes the guests' group if no process is left in
// it (the guests jitsu leaves running for its next start keep it).
func (w *Weigher) Run(ctx context.Context, interval time.Duration) error {
	if w.mode == ModeOff || w.mode == ModeNone {
		<-ctx.Done()
		return nil
	}
	defer w.removeGroup()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case d := <-w.requests:
			w.placeDomains(map[string]bool{d: true}, true)
		case <-t.C:
			w.domainsMu.Lock()
			ds := w.domains
			w.domainsMu.Unlock()
			w.placeDomains(ds, false)
		}
	}
}

// removeGroup removes the guests' group when it is empty; a group with
// processes (EBUSY) stays.
func (w *Weigher) removeGroup() {
	dir := w.Dir()
	err := os.Remove(dir)
	switch {
	case err == nil:
		w.log.Debug("guests' cgroup removed", zap.String("cgroup", dir))
	case errors.Is(err, syscall.EBUSY) || errors.Is(err, os.ErrNotExist):
		w.log.Debug("guests' cgroup kept: guests still run in it", zap.String("cgroup", dir))
	default:
		w.log.Warn("removing the guests' cgroup", zap.String("cgroup", dir), zap.Error(err))
	}
}

// placeDomains places the QEMU processes of the domains in ds.
func (w *Weigher) placeDomains(ds map[string]bool, logMissing bool) {
	pids := QEMUPids(w.opts.Proc, ds)
	for d := range ds {
		pid, ok := pids[d]
		if !ok {
			if logMissing {
				w.log.Debug("no QEMU process found for a started domain", zap.String("domain", d))
			}
			continue
		}
		if err := w.Place(pid); err != nil {
			w.log.Warn("could not lower the CPU weight of a guest", zap.String("domain", d), zap.Int("pid", pid), zap.Error(err))
		}
	}
}

// Place lowers the CPU weight of process pid (a QEMU): it moves it into
// the guests' cgroup if it is in jitsu's own or the root one, sets the
// weight of the partition libvirt put it in otherwise. Placing a placed
// process, or any without a cgroup cpu controller, does nothing.
func (w *Weigher) Place(pid int) error {
	if w.mode == ModeOff || w.mode == ModeNone {
		return nil
	}
	cg, err := cgroupOf(w.opts.Proc, strconv.Itoa(pid), w.v2)
	if err != nil {
		return err
	}
	group := "/" + w.opts.Group
	switch {
	case cg == group || strings.HasPrefix(cg, group+"/"):
		return nil
	case cg == "/" || cg == w.self:
		return w.Move(pid, w.Dir())
	}
	part := partition(cg, w.self)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.weighted[part] {
		return nil
	}
	if err := w.setWeight(filepath.Join(w.mount, part)); err != nil {
		return err
	}
	w.weighted[part] = true
	w.log.Info("guests are in a partition of libvirt's: its CPU weight is lowered", zap.String("partition", part),
		zap.Int("weight", w.opts.Weight))
	return nil
}

// Move writes pid into the cgroup dir (all its threads move with it).
func (w *Weigher) Move(pid int, dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("move process %d into %s: %w", pid, dir, err)
	}
	return nil
}

// partition is the top of cg that is not an ancestor of self: the
// partition libvirt placed a guest in (/machine of
// /machine/qemu-1-web.libvirt-qemu).
func partition(cg, self string) string {
	parts := strings.Split(strings.Trim(cg, "/"), "/")
	own := strings.Split(strings.Trim(self, "/"), "/")
	i := 0
	for i < len(parts)-1 && i < len(own) && parts[i] == own[i] {
		i++
	}
	return "/" + strings.Join(parts[:i+1], "/")
}

// findCPUController returns the mount point of the hierarchy with the cpu
// controller, from a mountinfo file, and whether it is cgroup v2; "" if
// none. A v1 cpu hierarchy wins over a v2 one without the controller.
func findCPUController(mountinfo string) (mount string, v2 bool) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", false
	}
	defer f.Close()
	var unified string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, rest := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(rest) < 3 {
			continue
		}
		switch rest[0] {
		case "cgroup":
			for _, o := range strings.Split(rest[2], ",") {
				if o == "cpu" {
					return unescape(fields[4]), false
				}
			}
		case "cgroup2":
			unified = unescape(fields[4])
		}
	}
	if unified != "" {
		b, err := os.ReadFile(filepath.Join(unified, "cgroup.controllers"))
		if err == nil && hasWord(string(b), "cpu") {
			return unified, true
		}
	}
	return "", false
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupOf returns the cgroup of process pid ("self" for this one) in the
// cpu hierarchy (v1) or the unified one (v2).
func cgroupOf(proc, pid string, v2 bool) (string, error) {
	b, err := os.ReadFile(filepath.Join(proc, pid, "cgroup"))
	if err != nil {
		return "", fmt.Errorf("read the cgroup of process %s: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if v2 && parts[0] == "0" && parts[1] == "" {
			return parts[2], nil
		}
		if !v2 && hasWord(strings.ReplaceAll(parts[1], ",", " "), "cpu") {
			return parts[2], nil
		}
	}
	return "", fmt.Errorf("process %s: no cpu cgroup in %s/%s/cgroup", pid, proc, pid)
}

// QEMUPids finds the QEMU process of each domain in ds: the process whose
// command line names it with "-name guest=DOMAIN,..." (libvirt's) or
// "-name DOMAIN".
func QEMUPids(proc string, ds map[string]bool) map[string]int {
	out := map[string]int{}
	ents, err := os.ReadDir(proc)
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte("qemu")) {
			continue
		}
		if d := qemuDomain(bytes.Split(b, []byte{0})); d != "" && ds[d] {
			out[d] = pid
		}
	}
	return out
}

// qemuDomain is the domain name a QEMU command line gives with -name.
func qemuDomain(args [][]byte) string {
	for i := 0; i+1 < len(args); i++ {
		if string(args[i]) != "-name" {
			continue
		}
		v := string(args[i+1])
		if g, ok := strings.CutPrefix(v, "guest="); ok {
			v = g
		}
		name, _, _ := strings.Cut(v, ",")
		return name
	}
	return ""
}
