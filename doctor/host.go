package doctor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/jitsu-unikernel/jitsu/synproxy"
)

// checkBridge checks that the bridge exists and is a bridge (sysNet is
// /sys/class/net).
func checkBridge(name, sysNet string) Result {
	r := Result{Check: "bridge " + name}
	fix := fmt.Sprintf("create it: ip link add %s type bridge && ip link set %s up, "+
		"give it the address of [network] gateway, and make it persistent "+
		"(e.g. /etc/network/interfaces or systemd-networkd); or set [network] bridge", name, name)
	if name == "" {
		r.Status, r.Detail, r.Fix = Fail, "no bridge configured", "set [network] bridge"
		return r
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, "not found", fix
		var ne *net.OpError
		if !errors.As(err, &ne) {
			r.Detail += ": " + err.Error()
		}
		return r
	}
	if _, err := os.Stat(filepath.Join(sysNet, name, "bridge")); err != nil {
		r.Status, r.Detail = Fail, "exists but is not a bridge"
		r.Fix = "the unikernels' NICs join a Linux bridge: set [network] bridge to one (ip -d link show type bridge lists them), " +
			"or create one under another name: ip link add br-jitsu type bridge && ip link set br-jitsu up"
		return r
	}
	r.Status, r.Detail = Pass, fmt.Sprintf("present (index %d, %s)", ifi.Index, upDown(ifi.Flags))
	r.Detail += ", " + bridgeMACDetail(name, ifi.HardwareAddr)
	return r
}

// bridgeMACDetail says what jitsu serve does with the bridge's MAC.
func bridgeMACDetail(name string, mac net.HardwareAddr) string {
	if len(mac) == 0 || bytes.Equal(mac, make([]byte, len(mac))) {
		return fmt.Sprintf("MAC 00:00:00:00:00:00 (its last port left): jitsu serve gives it %s, derived from its name", synproxy.BridgeMAC(name))
	}
	return fmt.Sprintf("MAC %s, pinned by jitsu serve", mac)
}

func upDown(f net.Flags) string {
	if f&net.FlagUp != 0 {
		return "up"
	}
	return "down: jitsu brings it up"
}

// Capability bits.
const (
	capNetBindService = 10
	capNetAdmin       = 12
	capNetRaw         = 13
)

// checkCapabilities reads CapEff from statusFile (/proc/self/status) and
// checks the synproxy's capabilities, and CAP_NET_BIND_SERVICE when a DNS
// port is below 1024.
func checkCapabilities(statusFile string, bind bool) Result {
	r := Result{Check: "capabilities"}
	eff, err := capEff(statusFile)
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, err.Error(), "run on Linux with /proc mounted"
		return r
	}
	need := []struct {
		bit  uint
		name string
	}{{capNetAdmin, "CAP_NET_ADMIN"}, {capNetRaw, "CAP_NET_RAW"}}
	if bind {
		need = append(need, struct {
			bit  uint
			name string
		}{capNetBindService, "CAP_NET_BIND_SERVICE"})
	}
	var missing, have []string
	for _, n := range need {
		if eff&(1<<n.bit) == 0 {
			missing = append(missing, n.name)
		} else {
			have = append(have, n.name)
		}
	}
	if len(missing) > 0 {
		r.Status = Fail
		r.Detail = "missing " + strings.Join(missing, ", ") + " in the effective set"
		r.Fix = "run jitsu as root, or as a service user with AmbientCapabilities=" + strings.Join(append(have, missing...), " ") +
			" (see examples/jitsu.service), or setcap cap_net_admin,cap_net_raw,cap_net_bind_service+ep on the binary"
		return r
	}
	r.Status, r.Detail = Pass, strings.Join(have, ", ")
	return r
}

// capEff returns the effective capability set from a /proc/PID/status file.
func capEff(statusFile string) (uint64, error) {
	f, err := os.Open(statusFile)
	if err != nil {
		return 0, fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("parse CapEff %q in %s: %w", v, statusFile, err)
			}
			return n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", statusFile, err)
	}
	return 0, fmt.Errorf("no CapEff line in %s", statusFile)
}

// needsBind reports whether a listen address has a port below 1024.
func needsBind(addrs []string) bool {
	for _, a := range addrs {
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 1024 {
			return true
		}
	}
	return false
}

// checkNFTables lists the nftables tables, which works when nf_tables is in
// the kernel and we have CAP_NET_ADMIN.
func checkNFTables() Result {
	r := Result{Check: "nf_tables"}
	if _, err := os.Stat("/sys/module/nf_tables"); err == nil {
		r.Status, r.Detail = Pass, "module loaded"
		return r
	}
	c, err := nftables.New()
	if err == nil {
		_, err = c.ListTablesOfFamily(nftables.TableFamilyINet)
		c.CloseLasting()
	}
	switch {
	case err == nil:
		r.Status, r.Detail = Pass, "available"
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		r.Status, r.Detail = Skip, "cannot tell without CAP_NET_ADMIN (see capabilities)"
	default:
		r.Status, r.Detail = Fail, "unavailable: "+err.Error()
		r.Fix = "load it (modprobe nf_tables) or use a kernel with CONFIG_NF_TABLES and CONFIG_NF_TABLES_INET; or disable [synproxy]"
	}
	return r
}

// checkNFQueue checks for nfnetlink_queue: loaded or built in (procDir,
// sysDir), or loadable from modDir/$(uname -r).
func checkNFQueue(procDir, sysDir, modDir string) Result {
	r := Result{Check: "nfnetlink_queue"}
	for _, p := range []string{
		filepath.Join(procDir, "net/netfilter/nfnetlink_queue"),
		filepath.Join(sysDir, "module/nfnetlink_queue"),
	} {
		if _, err := os.Stat(p); err == nil {
			r.Status, r.Detail = Pass, "available ("+p+")"
			return r
		}
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		rel := unix.ByteSliceToString(uts.Release[:])
		for _, list := range []string{"modules.builtin", "modules.dep"} {
			b, err := os.ReadFile(filepath.Join(modDir, rel, list))
			if err == nil && strings.Contains(string(b), "/nfnetlink_queue.ko") {
				r.Status, r.Detail = Pass, "loadable module (loaded on first use)"
				return r
			}
		}
	}
	r.Status, r.Detail = Fail, "not loaded and no module found"
	r.Fix = "modprobe nfnetlink_queue, or use a kernel with CONFIG_NETFILTER_NETLINK_QUEUE; or disable [synproxy]"
	return r
}

// checkListen tries to bind UDP and TCP on every DNS listen address.
func checkListen(addrs []string) []Result {
	if len(addrs) == 0 {
		return []Result{{Check: "DNS listen addresses", Status: Fail, Detail: "none configured", Fix: "set [dns] listen"}}
	}
	var out []Result
	for _, a := range addrs {
		r := Result{Check: "DNS listen " + a}
		pc, err := net.ListenPacket("udp", a)
		if err == nil {
			pc.Close()
			var ln net.Listener
			ln, err = net.Listen("tcp", a)
			if err == nil {
				ln.Close()
			} else {
				err = fmt.Errorf("tcp: %w", err)
			}
		} else {
			err = fmt.Errorf("udp: %w", err)
		}
		if err != nil {
			r.Status, r.Detail, r.Fix = Fail, err.Error(), bindFix(a, err)
		} else {
			r.Status, r.Detail = Pass, "free (udp and tcp)"
		}
		out = append(out, r)
	}
	return out
}

// checkListenTCP tries to bind a TCP address.
func checkListenTCP(what, a string) Result {
	r := Result{Check: what + " " + a}
	ln, err := net.Listen("tcp", a)
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, err.Error(), bindFix(a, err)
		return r
	}
	ln.Close()
	r.Status, r.Detail = Pass, "free"
	return r
}

// bindFix explains a failed bind.
func bindFix(addr string, err error) string {
	_, port, _ := net.SplitHostPort(addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Sprintf("another process uses it (find it with: ss -lupn 'sport = :%s'; ss -ltpn 'sport = :%s'); "+
			"stop it (systemd-resolved's stub listener: DNSStubListener=no), check jitsu is not already running (jitsu status), "+
			"or listen elsewhere", port, port)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return "ports below 1024 need CAP_NET_BIND_SERVICE: run as root or grant AmbientCapabilities=CAP_NET_BIND_SERVICE (see examples/jitsu.service)"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no interface of this host has that address: add it, or listen on an address the host has"
	}
	return "check the address (ip:port) and the host's interfaces"
}

// qemuIdentity is the user QEMU runs as under libvirt.
type qemuIdentity struct {
	name  string
	group string // its primary group's name
	uid   uint32
	gids  map[uint32]bool
}

// qemuUser looks up libvirt's QEMU user (libvirt-qemu on Debian, qemu
// elsewhere); nil if neither exists.
func qemuUser() *qemuIdentity {
	for _, name := range []string{"libvirt-qemu", "qemu"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			continue
		}
		id := &qemuIdentity{name: name, group: name, uid: uint32(uid), gids: map[uint32]bool{}}
		if g, err := user.LookupGroupId(u.Gid); err == nil {
			id.group = g.Name
		}
		gids, _ := u.GroupIds()
		for _, g := range append(gids, u.Gid) {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				id.gids[uint32(n)] = true
			}
		}
		return id
	}
	return nil
}

// allows reports whether the file at path (fi) grants the permission bits
// perm (4 = r, 1 = x) to id: by its owner, group and mode, or by its POSIX
// ACL when it has one.
func (id *qemuIdentity) allows(path string, fi fs.FileInfo, perm fs.FileMode) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fi.Mode().Perm()&perm != 0
	}
	m := fi.Mode().Perm()
	if id.uid == 0 {
		return true
	}
	if acl := readACL(path); acl != nil {
		return aclAllows(acl, id, st.Uid, st.Gid, perm)
	}
	switch {
	case st.Uid == id.uid:
		return m&(perm<<6) != 0
	case id.gids[st.Gid]:
		return m&(perm<<3) != 0
	}
	return m&perm != 0
}

// checkPaths checks every image file: readable by us, and by QEMU's user
// (q; nil = unknown, not checked).
func checkPaths(paths []imagePath, q *qemuIdentity) []Result {
	if len(paths) == 0 {
		return []Result{{Check: "unikernel images", Status: Skip, Detail: "no unikernel configured"}}
	}
	var out []Result
	for _, p := range paths {
		out = append(out, checkPath(p, q))
	}
	return out
}

func checkPath(p imagePath, q *qemuIdentity) Result {
	r := Result{Check: fmt.Sprintf("%s %s (%s)", p.kind, p.path, strings.Join(p.users, ", "))}
	f, err := os.Open(p.path)
	if err != nil {
		r.Status, r.Detail = Fail, err.Error()
		switch {
		case errors.Is(err, fs.ErrNotExist):
			r.Fix = "create it (the example unikernel: make image) or correct the path in the config"
			if p.kind == "kernel" || p.kind == "initrd" {
				r.Fix += "; paths must be absolute"
			}
		case errors.Is(err, fs.ErrPermission):
			r.Fix = "make it readable by jitsu (root) and QEMU's user, not by everyone: " + grantFix(q, p.path, "r")
		default:
			r.Fix = "check the file"
		}
		return r
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, err.Error(), "check the file"
		return r
	}
	if !fi.Mode().IsRegular() && fi.Mode()&fs.ModeDevice == 0 {
		r.Status, r.Detail, r.Fix = Fail, "not a regular file", "point the config at the image file itself"
		return r
	}
	if _, err := f.Read(make([]byte, 1)); err != nil {
		r.Status, r.Detail, r.Fix = Fail, "unreadable: "+err.Error(), "check the file is complete and not empty"
		return r
	}
	if q == nil {
		r.Status, r.Detail = Pass, fmt.Sprintf("readable (%d bytes; no libvirt-qemu user here, its access not checked)", fi.Size())
		return r
	}
	if !q.allows(p.path, fi, 4) {
		r.Status = Fail
		r.Detail = fmt.Sprintf("not readable by %s, the user QEMU runs as (mode %v)", q.name, fi.Mode().Perm())
		r.Fix = grantFix(q, p.path, "r") + " (no need to make it world-readable)"
		return r
	}
	for dir := filepath.Dir(p.path); ; dir = filepath.Dir(dir) {
		di, err := os.Stat(dir)
		if err != nil {
			r.Status, r.Detail, r.Fix = Fail, err.Error(), "check the directory"
			return r
		}
		if !q.allows(dir, di, 1) {
			r.Status = Fail
			r.Detail = fmt.Sprintf("directory %s is not searchable by %s, the user QEMU runs as (mode %v)", dir, q.name, di.Mode().Perm())
			r.Fix = grantFix(q, dir, "x") + ", or move the images to a directory QEMU can reach such as /var/lib/jitsu/images (not /root)"
			return r
		}
		if dir == "/" || dir == "." {
			break
		}
	}
	r.Status, r.Detail = Pass, fmt.Sprintf("readable, also by %s (%d bytes)", q.name, fi.Size())
	return r
}

// grantFix says how to grant QEMU's user q the permission perm ("r" or
// "x") on path without granting it to everyone: by an ACL entry, or by
// the group of QEMU's user.
func grantFix(q *qemuIdentity, path, perm string) string {
	name, group := "libvirt-qemu", "libvirt-qemu"
	if q != nil {
		name, group = q.name, q.group
	}
	return fmt.Sprintf("setfacl -m u:%s:%s %s (package acl), or chgrp %s %s && chmod g+%s %s",
		name, perm, path, group, path, perm, path)
}
