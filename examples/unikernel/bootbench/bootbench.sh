#!/bin/bash
# bootbench.sh runs bootbench (the boot-floor benchmark of docs/boot.md)
# against a private libvirtd inside a fresh network namespace, and removes
# everything it created afterwards, also on failure.
#
#   examples/unikernel/bootbench/bootbench.sh [bootbench flags...]
#
# Only one libvirtd can run per machine: the script holds the team's lock
# /run/jitsu-libvirtd.lock while its libvirtd runs. Needs root.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
ns=jitsu-bb-$$
bin=$(mktemp /tmp/bootbench.XXXXXX)

cleanup() {
	set +e
	if [ -n "${lvpid:-}" ]; then kill "$lvpid" 2>/dev/null; for _ in $(seq 50); do kill -0 "$lvpid" 2>/dev/null || break; sleep 0.1; done; fi
	if [ -n "${hookpid:-}" ]; then kill "$hookpid" 2>/dev/null; fi
	if [ -n "${vlpid:-}" ]; then kill "$vlpid" 2>/dev/null; for _ in $(seq 50); do kill -0 "$vlpid" 2>/dev/null || break; sleep 0.1; done; fi
	ip netns del "$ns" 2>/dev/null
	rm -f "$bin"
}
trap cleanup EXIT

(cd "$repo" && go build -o "$bin" ./examples/unikernel/bootbench)

exec 8>/run/jitsu-libvirtd.lock
echo "bootbench.sh: waiting for /run/jitsu-libvirtd.lock" >&2
flock 8

ip netns add "$ns"
nsx() { ip netns exec "$ns" "$@"; }
nsx ip link set lo up
# A fixed bridge MAC: otherwise the bridge takes over its first port's
# (the tap's) MAC when the VM starts, and that address change flushes every
# neighbour entry of the bridge, the permanent one below included: the
# first probe then waits a whole ARP retransmit (1 s) for the guest.
# BOOTBENCH_BRIDGE_MAC=none reproduces the flush (for docs/boot.md).
mac=${BOOTBENCH_BRIDGE_MAC:-02:00:00:4a:00:01}
if [ "$mac" = none ]; then
	nsx ip link add jbr0 type bridge
else
	nsx ip link add jbr0 address "$mac" type bridge
fi
nsx ip addr add 10.77.0.1/24 dev jbr0
nsx ip link set jbr0 up
# Pin the guest's neighbour entry: the first probe must not wait for ARP.
nsx ip neigh replace 10.77.0.2 lladdr 52:54:00:4a:00:02 dev jbr0 nud permanent

if ! pgrep -x virtlogd >/dev/null; then
	nsx virtlogd -d
	vlpid=$(cat /run/virtlogd.pid)
fi
for _ in $(seq 100); do [ -S /run/libvirt/virtlogd-sock ] && break; sleep 0.1; done
if pgrep -x libvirtd >/dev/null; then
	echo "bootbench.sh: a libvirtd is running although we hold the lock; not starting another" >&2
	exit 1
fi
if [ -n "${BOOTBENCH_QEMU_CONF:-}" ]; then
	# Try another qemu.conf without touching the machine's: bind-mount it
	# over /etc/libvirt/qemu.conf in a private mount namespace.
	nsx unshare -m --propagation private sh -c 'mount --bind "$1" /etc/libvirt/qemu.conf && exec libvirtd -d' sh "$BOOTBENCH_QEMU_CONF"
else
	nsx libvirtd -d
fi
for _ in $(seq 100); do [ -S /run/libvirt/libvirt-sock ] && [ -s /run/libvirtd.pid ] && break; sleep 0.1; done
lvpid=$(cat /run/libvirtd.pid)
mkdir -p /var/lib/jitsu/bootbench
# BOOTBENCH_HOOK=CMD runs CMD in the namespace beside the benchmark
# (e.g. a packet capture while debugging the probe).
if [ -n "${BOOTBENCH_HOOK:-}" ]; then
	nsx sh -c "$BOOTBENCH_HOOK" &
	hookpid=$!
	sleep 0.3
fi
nsx "$bin" -bridge jbr0 -ip 10.77.0.2 -gw 10.77.0.1 -mac 52:54:00:4a:00:02 "$@"
