package doctor

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/synproxy"
)

// wantResult checks a result's status and that its detail and fix mention
// the given fragments.
func wantResult(t *testing.T, r Result, status Status, detail, fix string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %s, want %s (detail %q)", r.Check, r.Status, status, r.Detail)
	}
	if !strings.Contains(r.Detail, detail) {
		t.Errorf("%s: detail %q, want it to contain %q", r.Check, r.Detail, detail)
	}
	if status == Fail && r.Fix == "" {
		t.Errorf("%s: a failure without a fix", r.Check)
	}
	if !strings.Contains(r.Fix, fix) {
		t.Errorf("%s: fix %q, want it to contain %q", r.Check, r.Fix, fix)
	}
	if status == Pass && r.Fix != "" {
		t.Errorf("%s: passed but has a fix %q", r.Check, r.Fix)
	}
}

func TestHypervisor(t *testing.T) {
	tests := []struct {
		name, uri, domainType string
		want                  []Status
		detail, fix           string
	}{
		{"unreachable", "qemu+unix:///system?socket=/nonexistent", "kvm", []Status{Fail, Skip},
			"/nonexistent", "start libvirtd"},
		{"test driver", "test:///default", "test", []Status{Pass, Pass}, "", ""},
		{"domain type not offered", "test:///default", "kvm", []Status{Pass, Fail},
			"", `set [hypervisor] domain_type = "qemu"`},
		{"unknown domain type", "test:///default", "xen", []Status{Pass, Fail},
			"", "domain_type to one of: test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := checkHypervisor(context.Background(), tt.uri, tt.domainType, Options{ProbeTimeout: time.Second})
			if len(rs) != len(tt.want) {
				t.Fatalf("got %d results, want %d: %+v", len(rs), len(tt.want), rs)
			}
			for i, st := range tt.want {
				if rs[i].Status != st {
					t.Errorf("result %d %q: %s, want %s (%s)", i, rs[i].Check, rs[i].Status, st, rs[i].Detail)
				}
				if st == Fail {
					wantResult(t, rs[i], Fail, tt.detail, tt.fix)
				}
			}
		})
	}
}

func TestGuestDomainTypes(t *testing.T) {
	caps := `<capabilities><host><cpu><arch>x86_64</arch></cpu></host>
<guest><os_type>hvm</os_type><arch name='i686'><domain type='qemu'/></arch></guest>
<guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/><domain type='kvm'/></arch></guest>
<guest><os_type>xen</os_type><arch name='x86_64'><domain type='xen'/></arch></guest>
</capabilities>`
	arch, types, err := guestDomainTypes(caps)
	if err != nil || arch != "x86_64" || strings.Join(types, ",") != "qemu,kvm" {
		t.Errorf("got %q %q %v, want x86_64 [qemu kvm]", arch, types, err)
	}
	if _, _, err := guestDomainTypes("<capabilities"); err == nil {
		t.Error("malformed capabilities: no error")
	}
}

func TestBridge(t *testing.T) {
	sys := t.TempDir()
	if err := os.MkdirAll(filepath.Join(sys, "lo", "bridge"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, bridge, sys string
		status            Status
		detail, fix       string
	}{
		{"missing", "jitsu-nobr0", "/sys/class/net", Fail, "not found", "ip link add jitsu-nobr0 type bridge"},
		{"not a bridge", "lo", "/sys/class/net", Fail, "not a bridge", "set [network] bridge"},
		{"none configured", "", "/sys/class/net", Fail, "no bridge", "[network] bridge"},
		// lo with a fake sysfs that says it is a bridge.
		{"present", "lo", sys, Pass, "present", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantResult(t, checkBridge(tt.bridge, tt.sys), tt.status, tt.detail, tt.fix)
		})
	}
}

func TestCapabilities(t *testing.T) {
	tests := []struct {
		name, capEff string
		bind         bool
		status       Status
		detail, fix  string
	}{
		{"all", "000001ffffffffff", true, Pass, "CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE", ""},
		{"none", "0000000000000000", false, Fail, "missing CAP_NET_ADMIN, CAP_NET_RAW", "AmbientCapabilities="},
		{"raw only", "0000000000002000", false, Fail, "missing CAP_NET_ADMIN in", "examples/jitsu.service"},
		{"admin raw, port 53 needs bind", "0000000000003000", true, Fail, "missing CAP_NET_BIND_SERVICE", "CAP_NET_BIND_SERVICE"},
		{"admin raw, high port", "0000000000003000", false, Pass, "CAP_NET_ADMIN, CAP_NET_RAW", ""},
		{"garbage", "zz", false, Fail, "parse CapEff", "Linux"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "status")
			os.WriteFile(f, []byte("Name:\tjitsu\nCapInh:\t0000000000000000\nCapEff:\t"+tt.capEff+"\nCapBnd:\t000001ffffffffff\n"), 0o644)
			wantResult(t, checkCapabilities(f, tt.bind), tt.status, tt.detail, tt.fix)
		})
	}
	wantResult(t, checkCapabilities("/nonexistent/status", false), Fail, "no such file", "/proc")
	if !needsBind([]string{"127.0.0.1:5353", "[::1]:53"}) || needsBind([]string{"127.0.0.1:5353"}) {
		t.Error("needsBind: port 53 needs CAP_NET_BIND_SERVICE, 5353 does not")
	}
}

func TestNFQueue(t *testing.T) {
	empty := t.TempDir()
	loaded := t.TempDir()
	os.MkdirAll(filepath.Join(loaded, "net/netfilter"), 0o755)
	os.WriteFile(filepath.Join(loaded, "net/netfilter/nfnetlink_queue"), nil, 0o644)
	wantResult(t, checkNFQueue(empty, empty, empty), Fail, "no module found", "modprobe nfnetlink_queue")
	wantResult(t, checkNFQueue(loaded, empty, empty), Pass, "available", "")
}

func TestListen(t *testing.T) {
	// An occupied UDP port, and a TCP-only occupied one.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A free port: bound and released.
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()

	tests := []struct {
		name, addr  string
		status      Status
		detail, fix string
	}{
		{"udp occupied", pc.LocalAddr().String(), Fail, "udp", "another process uses it"},
		{"tcp occupied", ln.Addr().String(), Fail, "tcp", "ss -ltpn"},
		{"not this host's address", "192.0.2.1:5353", Fail, "assign requested address", "no interface of this host"},
		{"free", freeAddr, Pass, "free", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := checkListen([]string{tt.addr})
			if len(rs) != 1 {
				t.Fatalf("got %d results", len(rs))
			}
			wantResult(t, rs[0], tt.status, tt.detail, tt.fix)
		})
	}
	wantResult(t, checkListen(nil)[0], Fail, "none configured", "[dns] listen")
	wantResult(t, checkListenTCP("metrics", ln.Addr().String()), Fail, "in use", "another process")
}

func TestPaths(t *testing.T) {
	// QEMU's user as a stranger to our files: uid and gid nobody owns.
	q := &qemuIdentity{name: "libvirt-qemu", group: "kvm", uid: 64055, gids: map[uint32]bool{64055: true}}
	// Not t.TempDir: its parent is 0700, and QEMU's user must reach base.
	base, err := os.MkdirTemp("", "jitsu-doctor-paths-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	open, closed := filepath.Join(base, "open"), filepath.Join(base, "closed")
	for _, d := range []struct {
		dir  string
		mode os.FileMode
	}{{base, 0o755}, {open, 0o755}, {closed, 0o700}} {
		os.Mkdir(d.dir, d.mode)
		if err := os.Chmod(d.dir, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	write := func(dir, name string, mode os.FileMode, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	good := write(open, "bzImage", 0o644, "kernel")
	private := write(open, "initrd.private", 0o600, "initrd")
	hidden := write(closed, "disk.img", 0o644, "disk")
	empty := write(open, "empty", 0o644, "")
	tests := []struct {
		name        string
		p           imagePath
		status      Status
		detail, fix string
	}{
		{"missing", imagePath{"kernel", filepath.Join(open, "nope"), []string{"www"}}, Fail, "no such file", "make image"},
		{"not readable by qemu", imagePath{"initrd", private, []string{"www"}}, Fail, "not readable by libvirt-qemu", "setfacl -m u:libvirt-qemu:r " + private},
		{"directory not searchable by qemu", imagePath{"disk", hidden, []string{"db"}}, Fail, "directory " + closed + " is not searchable", "chmod g+x " + closed},
		{"empty", imagePath{"kernel", empty, []string{"www"}}, Fail, "unreadable", "not empty"},
		{"directory instead of file", imagePath{"kernel", open, []string{"www"}}, Fail, "not a regular file", "image file itself"},
		{"readable", imagePath{"kernel", good, []string{"www", "blog"}}, Pass, "also by libvirt-qemu", ""},
	}
	if fi, err := os.Stat(filepath.Dir(base)); err != nil || fi.Mode().Perm()&0o001 == 0 {
		t.Skipf("the temp directory %s is not o+x, so no file below it is reachable by QEMU's user; set TMPDIR", filepath.Dir(base))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantResult(t, checkPath(tt.p, q), tt.status, tt.detail, tt.fix)
		})
	}
	if r := checkPath(imagePath{"kernel", good, []string{"www", "blog"}}, q); !strings.Contains(r.Check, "(www, blog)") {
		t.Errorf("check %q does not name the unikernels using the file", r.Check)
	}
}

func TestRunReport(t *testing.T) {
	cfg := &config.Config{}
	cfg.Hypervisor.URI = "qemu+unix:///system?socket=/nonexistent"
	cfg.Hypervisor.DomainType = "kvm"
	cfg.Network.Bridge = "jitsu-nobr0"
	cfg.DNS.Listen = []string{"127.0.0.1:0"}
	cfg.Unikernels = []config.Unikernel{
		{Name: "www", Kernel: "/nonexistent/bzImage", Initrd: "/nonexistent/initrd"},
		{Name: "blog", Kernel: "/nonexistent/bzImage"},
	}
	var out bytes.Buffer
	rep := Run(context.Background(), cfg, Options{Out: &out, SkipProbe: true})
	if rep.OK() {
		t.Fatal("report OK although libvirtd, the bridge and the kernels are missing")
	}
	// The kernel shared by two unikernels is checked once, naming both.
	text := out.String()
	for _, want := range []string{
		"FAIL  libvirtd at qemu+unix:///system?socket=/nonexistent: ",
		"SKIP  domain type kvm: libvirtd unreachable",
		"FAIL  bridge jitsu-nobr0: not found",
		"PASS  DNS listen 127.0.0.1:0: free (udp and tcp)",
		"FAIL  kernel /nonexistent/bzImage (www, blog): ",
		"FAIL  initrd /nonexistent/initrd (www): ",
		"SKIP  netfilter (nf_tables, nfnetlink_queue): synproxy disabled",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// Every failure is followed by its fix.
	if n, f := strings.Count(text, "\nFAIL  ")+btoi(strings.HasPrefix(text, "FAIL  ")), strings.Count(text, "      fix: "); n != f || n != len(rep.Failed()) {
		t.Errorf("%d FAIL lines, %d fix lines, %d failed results:\n%s", n, f, len(rep.Failed()), text)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestProbeELF(t *testing.T) {
	b := ProbeELF()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not an ELF: %v", err)
	}
	if f.Class != elf.ELFCLASS32 || f.Machine != elf.EM_386 || f.Type != elf.ET_EXEC {
		t.Errorf("ELF %v %v %v, want a 32-bit i386 executable", f.Class, f.Machine, f.Type)
	}
	if len(f.Progs) != 1 || f.Progs[0].Type != elf.PT_LOAD || f.Progs[0].Vaddr != loadAddr || f.Progs[0].Filesz != uint64(len(b)) {
		t.Fatalf("program headers %+v", f.Progs)
	}
	if f.Entry <= loadAddr || f.Entry >= loadAddr+uint64(len(b)) {
		t.Errorf("entry %#x outside the loaded image", f.Entry)
	}
	// A multiboot header in the first 8 KiB, 4-aligned, summing to zero.
	found := false
	for off := 0; off+12 <= len(b) && off < 8192; off += 4 {
		m, fl, ck := binary.LittleEndian.Uint32(b[off:]), binary.LittleEndian.Uint32(b[off+4:]), binary.LittleEndian.Uint32(b[off+8:])
		if m == 0x1BADB002 && m+fl+ck == 0 {
			found = true
		}
	}
	if !found {
		t.Error("no valid multiboot header")
	}
	if !bytes.Contains(b, []byte(ProbeMarker+"\r\n\x00")) {
		t.Error("marker string missing")
	}
}

// TestProbeELFBootsInQEMU boots the probe kernel in QEMU (TCG, no libvirt)
// and reads the marker from its serial port.
func TestProbeELFBootsInQEMU(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("qemu-system-x86_64 missing and CI=true")
		}
		t.Skip("qemu-system-x86_64 not installed")
	}
	dir := t.TempDir()
	kernel := filepath.Join(dir, "probe.elf")
	if err := os.WriteFile(kernel, ProbeELF(), 0o644); err != nil {
		t.Fatal(err)
	}
	serial := filepath.Join(dir, "serial.log")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-machine", "pc,accel=tcg", "-m", "32", "-nodefaults", "-display", "none",
		"-no-reboot", "-kernel", kernel, "-serial", "file:"+serial)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	}()
	for {
		if b, _ := os.ReadFile(serial); bytes.Contains(b, []byte(ProbeMarker)) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s on the serial port; qemu: %s", ProbeMarker, stderr.String())
		case <-exited:
			b, _ := os.ReadFile(serial)
			if !bytes.Contains(b, []byte(ProbeMarker)) {
				t.Fatalf("qemu exited without %s on the serial port: %s", ProbeMarker, stderr.String())
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestBridgeMACDetail(t *testing.T) {
	tests := []struct {
		name string
		mac  net.HardwareAddr
		want string
	}{
		{"zero", net.HardwareAddr{0, 0, 0, 0, 0, 0}, "gives it " + synproxy.BridgeMAC("br-x").String()},
		{"none", nil, "derived from its name"},
		{"set", net.HardwareAddr{0x02, 1, 2, 3, 4, 5}, "MAC 02:01:02:03:04:05, pinned"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bridgeMACDetail("br-x", tt.mac); !strings.Contains(got, tt.want) {
				t.Errorf("bridgeMACDetail(%v) = %q, want it to contain %q", tt.mac, got, tt.want)
			}
		})
	}
}

func TestGuestCPU(t *testing.T) {
	dir := t.TempDir()
	mi := func(s string) string {
		p := filepath.Join(dir, s)
		if err := os.MkdirAll(filepath.Join(p, "self"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1, none := mi("v1"), mi("none")
	if err := os.WriteFile(filepath.Join(v1, "self/mountinfo"), []byte("35 25 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(none, "self/mountinfo"), []byte("24 1 0:22 / /sys rw - sysfs sysfs rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantResult(t, checkGuestCPU(10, v1), Pass, "cgroup v1 (cpu.shares) at /sys/fs/cgroup/cpu: guests weigh 10", "")
	wantResult(t, checkGuestCPU(10, none), Warn, "the guests keep their CPU weight (not 10)", "mount the cgroup cpu controller")
	wantResult(t, checkGuestCPU(0, v1), Skip, "guest_cpu_weight = 0", "")
}
