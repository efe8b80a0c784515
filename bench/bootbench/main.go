// Command bootbench measures the boot floor of a unikernel image through
// libvirt: the time from the domain create call to the first HTTP answer
// (or to a ready marker on the serial console), over several runs, and the
// phases of each boot (docs/boot.md).
//
// It lets you compare domain and kernel choices with a domain XML of its
// own (the product's floor is bench/bootfloor). It must run inside the
// sandbox's namespace, where the bridge and the guest's address are, with
// the sandbox's libvirtd: `make bench-bootbench`, or
//
//	bin/jitsu-sandbox run -in -- bootbench -runs 10 -lean \
//	  -kernel /var/lib/jitsu/images/example/vmlinux \
//	  -initrd /var/lib/jitsu/images/example/initrd.cpio
//
// It pins the guest's neighbour entry on the bridge before the first boot,
// so that the first probe does not wait for ARP.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/jitsu-unikernel/jitsu/internal/sandbox"
)

type options struct {
	URI, Name, Kernel, Initrd, Append, Loader, Machine, Bridge, IP, Netmask, Gateway, MAC string
	SerialDir, Ready, CPU                                                                 string
	Runs, MemoryMiB                                                                       int
	Lean, ACPI, ShowXML, Define                                                           bool
	Timeout                                                                               time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.URI, "uri", "qemu:///system", "libvirt URI")
	flag.StringVar(&o.Name, "name", "jitsu-bootbench", "domain name")
	flag.StringVar(&o.Kernel, "kernel", "/var/lib/jitsu/images/example/vmlinux", "kernel (bzImage, PVH vmlinux or multiboot ELF)")
	flag.StringVar(&o.Initrd, "initrd", "/var/lib/jitsu/images/example/initrd.cpio", "initrd (empty: none)")
	flag.StringVar(&o.Append, "append", "console=ttyS0", "kernel command line; ip= is appended unless -ready serial")
	flag.StringVar(&o.Loader, "loader", "", "firmware ROM for <os><loader type='rom'> (e.g. /usr/share/qemu/qboot.rom); empty: SeaBIOS")
	flag.StringVar(&o.Machine, "machine", "pc", "machine type (pc, q35)")
	flag.StringVar(&o.Bridge, "bridge", sandbox.Bridge, "bridge for the guest NIC")
	flag.StringVar(&o.IP, "ip", "10.213.0.5", "guest address")
	flag.StringVar(&o.Gateway, "gw", sandbox.Gateway.String(), "gateway (the bridge's address)")
	flag.StringVar(&o.Netmask, "netmask", "255.255.255.0", "netmask")
	flag.StringVar(&o.MAC, "mac", "52:54:00:4a:00:02", "guest MAC")
	flag.StringVar(&o.SerialDir, "serial-dir", "/var/lib/jitsu/bootbench", "directory for serial logs (readable by libvirt-qemu)")
	flag.StringVar(&o.CPU, "cpu", "", "raw <cpu> element for the domain (e.g. \"<cpu check='none'/>\"); empty: none")
	flag.StringVar(&o.Ready, "ready", "http", "ready condition: http (first HTTP 200 from the guest) or serial (JITSU-READY on the console)")
	flag.IntVar(&o.Runs, "runs", 10, "number of boots")
	flag.IntVar(&o.MemoryMiB, "memory", 128, "guest memory in MiB")
	flag.BoolVar(&o.Lean, "lean", false, "remove devices the guest does not use (USB, balloon, NIC option ROM)")
	flag.BoolVar(&o.ACPI, "acpi", true, "<features><acpi/>")
	flag.BoolVar(&o.ShowXML, "xml", false, "print the domain XML and exit")
	flag.BoolVar(&o.Define, "define", false, "define the domain once and start it per run (instead of creating a transient domain)")
	flag.DurationVar(&o.Timeout, "timeout", 30*time.Second, "per-boot timeout")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bootbench:", err)
		os.Exit(1)
	}
}

var domainTmpl = template.Must(template.New("d").Parse(`<domain type='qemu'>
  <name>{{.Name}}</name>
  <memory unit='MiB'>{{.MemoryMiB}}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='{{.Machine}}'>hvm</type>
{{- if .Loader}}
    <loader type='rom'>{{.Loader}}</loader>
{{- end}}
    <kernel>{{.Kernel}}</kernel>
{{- if .Initrd}}
    <initrd>{{.Initrd}}</initrd>
{{- end}}
{{- if .Cmdline}}
    <cmdline>{{.Cmdline}}</cmdline>
{{- end}}
  </os>
  <features>{{if .ACPI}}<acpi/>{{end}}</features>
{{- if .CPU}}
  {{.CPU}}
{{- end}}
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='bridge'>
      <source bridge='{{.Bridge}}'/>
      <mac address='{{.MAC}}'/>
      <model type='virtio'/>
{{- if .Lean}}
      <rom enabled='no'/>
{{- end}}
    </interface>
    <serial type='file'>
      <source path='{{.Serial}}'/>
      <target port='0'/>
    </serial>
{{- if .Lean}}
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
{{- end}}
  </devices>
</domain>
`))

type domainParams struct {
	options
	Cmdline, Serial string
}

type result struct {
	create, serialReady, http time.Duration // since the create call
	kInit, kListen            time.Duration // guest printk clock (jitsu.debug=1)
}

func run(o options) error {
	if o.Ready != "http" && o.Ready != "serial" {
		return fmt.Errorf("-ready %q: want http or serial", o.Ready)
	}
	if err := os.MkdirAll(o.SerialDir, 0o755); err != nil {
		return fmt.Errorf("create serial dir: %w", err)
	}
	p := domainParams{options: o, Cmdline: o.Append, Serial: filepath.Join(o.SerialDir, o.Name+".serial")}
	if o.Ready == "http" {
		p.Cmdline = strings.TrimSpace(fmt.Sprintf("%s ip=%s::%s:%s::eth0:off", o.Append, o.IP, o.Gateway, o.Netmask))
	}
	var xml bytes.Buffer
	if err := domainTmpl.Execute(&xml, p); err != nil {
		return fmt.Errorf("domain XML: %w", err)
	}
	if o.ShowXML {
		fmt.Print(xml.String())
		return nil
	}
	if o.Ready == "http" {
		if out, err := exec.Command("ip", "neigh", "replace", o.IP, "lladdr", o.MAC, "dev", o.Bridge, "nud", "permanent").CombinedOutput(); err != nil {
			return fmt.Errorf("pin the guest's neighbour entry (run inside the sandbox: jitsu-sandbox run -in): %w: %s", err, out)
		}
		defer func() { _ = exec.Command("ip", "neigh", "del", o.IP, "dev", o.Bridge).Run() }()
	}
	conn, err := libvirt.NewConnect(o.URI)
	if err != nil {
		return fmt.Errorf("connect %s: %w", o.URI, err)
	}
	defer conn.Close()
	// A leftover domain of an interrupted run.
	if d, err := conn.LookupDomainByName(o.Name); err == nil {
		_ = d.Destroy()
		_ = d.Undefine()
		d.Free()
	}
	if o.Define {
		d, err := conn.DomainDefineXML(xml.String())
		if err != nil {
			return fmt.Errorf("define domain: %w", err)
		}
		defer func() {
			_ = d.Undefine()
			d.Free()
		}()
	}
	var results []result
	for i := 0; i < o.Runs; i++ {
		r, err := boot(conn, xml.String(), p)
		if err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
		results = append(results, r)
		fmt.Printf("run %2d: create %6.1f ms  serial-ready %6.1f ms  http %6.1f ms  guest: /init %6.1f ms  listen %6.1f ms\n",
			i, ms(r.create), ms(r.serialReady), ms(r.http), ms(r.kInit), ms(r.kListen))
	}
	summary := func(label string, f func(result) time.Duration) {
		var v []float64
		for _, r := range results {
			if d := f(r); d > 0 {
				v = append(v, ms(d))
			}
		}
		if len(v) == 0 {
			return
		}
		slices.Sort(v)
		med := v[len(v)/2]
		if len(v)%2 == 0 {
			med = (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		fmt.Printf("%-28s median %7.1f ms  min %7.1f  max %7.1f  (n=%d)\n", label, med, v[0], v[len(v)-1], len(v))
	}
	summary("create call returned", func(r result) time.Duration { return r.create })
	summary("JITSU-READY on serial", func(r result) time.Duration { return r.serialReady })
	summary("first HTTP answer", func(r result) time.Duration { return r.http })
	summary("guest clock: run /init", func(r result) time.Duration { return r.kInit })
	summary("guest clock: listening", func(r result) time.Duration { return r.kListen })
	summary("pre-kernel (estimate)", func(r result) time.Duration {
		if r.kListen == 0 || r.serialReady == 0 {
			return 0
		}
		return r.serialReady - r.kListen - r.create
	})
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

var (
	reInit   = regexp.MustCompile(`\[\s*(\d+\.\d+)\] Run /init`)
	reListen = regexp.MustCompile(`\[\s*(\d+\.\d+)\] jitsu-init: listening`)
)

func boot(conn *libvirt.Connect, xml string, p domainParams) (result, error) {
	var r result
	_ = os.Remove(p.Serial)
	ctx, cancel := context.WithTimeout(context.Background(), p.Timeout)
	defer cancel()

	httpDone := make(chan time.Duration, 1)
	serialDone := make(chan time.Duration, 1)
	start := time.Now()
	if p.Ready == "http" {
		go probeHTTP(ctx, start, p.IP, httpDone)
	}
	go watchSerial(ctx, start, p.Serial, serialDone)
	var dom *libvirt.Domain
	var err error
	if p.Define {
		dom, err = conn.LookupDomainByName(p.Name)
		if err == nil {
			err = dom.Create()
		}
	} else {
		dom, err = conn.DomainCreateXML(xml, libvirt.DOMAIN_NONE)
	}
	if err != nil {
		return r, fmt.Errorf("create domain: %w", err)
	}
	r.create = time.Since(start)
	defer func() {
		_ = dom.Destroy()
		dom.Free()
	}()
	if p.Ready == "http" {
		select {
		case r.http = <-httpDone:
		case <-ctx.Done():
			return r, fmt.Errorf("no HTTP answer from %s within %v (serial log %s)", p.IP, p.Timeout, p.Serial)
		}
	}
	select {
	case r.serialReady = <-serialDone:
	case <-ctx.Done():
		return r, fmt.Errorf("no JITSU-READY on the serial console within %v (%s)", p.Timeout, p.Serial)
	}
	// With jitsu.debug=1 the guest dumps its kernel log after the marker.
	if strings.Contains(p.Cmdline, "jitsu.debug=1") {
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			b, _ := os.ReadFile(p.Serial)
			if m := reListen.FindSubmatch(b); m != nil {
				r.kListen = secs(m[1])
				if m := reInit.FindSubmatch(b); m != nil {
					r.kInit = secs(m[1])
				}
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return r, nil
}

func secs(b []byte) time.Duration {
	f, _ := strconv.ParseFloat(string(b), 64)
	return time.Duration(f * float64(time.Second))
}

// probeHTTP starts a fresh TCP connection with an HTTP GET every 5 ms
// until one is answered with 200, and reports the time of that answer.
func probeHTTP(ctx context.Context, start time.Time, ip string, done chan<- time.Duration) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	won := make(chan time.Duration, 1)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-won:
			done <- d
			return
		case <-tick.C:
			go func() {
				t := time.Since(start)
				ok, stage := get(ctx, ip)
				if os.Getenv("BOOTBENCH_DEBUG") != "" {
					fmt.Fprintf(os.Stderr, "probe started %6.1f ms: %s at %6.1f ms\n", ms(t), stage, ms(time.Since(start)))
				}
				if ok {
					select {
					case won <- time.Since(start):
					default:
					}
				}
			}()
		}
	}
}

// get does one HTTP/1.0 GET / on a new connection and reports a 200, and
// how far it got.
func get(ctx context.Context, ip string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, "80"))
	if err != nil {
		return false, "dial: " + err.Error()
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl.Add(700 * time.Millisecond))
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: "+ip+"\r\n\r\n"); err != nil {
		return false, "write: " + err.Error()
	}
	buf := make([]byte, 12)
	if _, err := io.ReadFull(c, buf); err != nil {
		return false, "read: " + err.Error()
	}
	return string(buf) == "HTTP/1.0 200" || string(buf) == "HTTP/1.1 200", "answer " + string(buf)
}

// watchSerial polls the serial log for the ready marker.
func watchSerial(ctx context.Context, start time.Time, path string, done chan<- time.Duration) {
	for {
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, []byte("JITSU-READY")) {
			done <- time.Since(start)
			return
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}
