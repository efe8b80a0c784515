// Package integration holds the root-tier tests of hypervisor/libvirt: the
// hypervisor contract and a full lifecycle over a real libvirtd and QEMU
// (TCG) booting the example unikernel inside a private network namespace
// (internal/testenv). They skip when not root or when the image is not
// built, and fail instead in CI (CI=true). Run them with -p 1: only one
// libvirtd can run per machine.
package integration
