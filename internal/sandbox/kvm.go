package sandbox

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// kvmDevice is the KVM device node.
const kvmDevice = "/dev/kvm"

// fixKVMAccess gives /dev/kvm the group kvm and mode 0660, as Debian's udev
// rules do at boot, when a machine without udev left it root:root 0600.
//
// Without it libvirt's QEMU user cannot open /dev/kvm while libvirtd's
// capability probe (run as root) could: libvirt then finds its cached QEMU
// capabilities invalid ("KVM was enabled when probing, but it is not
// available now") at every lookup and re-probes QEMU several times per
// domain start, seconds each time. Domains of type qemu (TCG) are not
// affected otherwise.
func fixKVMAccess(logf func(string, ...any)) error {
	fi, err := os.Stat(kvmDevice)
	if err != nil {
		return nil // no KVM: nothing to align
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Gid != 0 || fi.Mode().Perm()&0o060 == 0o060 {
		return nil // a group was given already (udev or an admin)
	}
	g, err := user.LookupGroup("kvm")
	if err != nil {
		return nil // no kvm group: the QEMU user cannot be in it either
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return fmt.Errorf("group kvm: gid %q: %w", g.Gid, err)
	}
	if err := os.Chown(kvmDevice, 0, gid); err != nil {
		return fmt.Errorf("chgrp kvm %s: %w", kvmDevice, err)
	}
	if err := os.Chmod(kvmDevice, fi.Mode().Perm()|0o060); err != nil {
		return fmt.Errorf("chmod g+rw %s: %w", kvmDevice, err)
	}
	logf("%s was root:root %v (no udev): set to root:kvm g+rw as udev would, or libvirt re-probes QEMU at every domain start", kvmDevice, fi.Mode().Perm())
	return nil
}
