#!/usr/bin/env bash
# Installs, with apt, everything jitsu's build, tests, benchmarks and demo
# need on Debian 12. Idempotent: packages already present are skipped.
# No daemon is started here: tests and the demo start libvirtd themselves,
# inside network namespaces they create.
set -euo pipefail

PKGS=(
  # build
  build-essential pkg-config git make
  # libvirt + QEMU (TCG works everywhere; KVM where the host has it)
  libvirt-daemon-system libvirt-clients libvirt-dev qemu-system-x86 qemu-utils
  # the example unikernel's kernel: Debian's kernel source and its build deps
  linux-source-6.1 flex bison bc libelf-dev libssl-dev xz-utils cpio kmod
  # DNS: knotd (the correctness and speed yardstick), dnsperf, dig
  knot dnsperf dnsutils
  # front door: the caching resolver of the topology test and the TCP/SNI
  # proxy it is benchmarked against
  unbound haproxy
  # networking: namespaces, bridges, nftables
  iproute2 nftables iptables curl procps psmisc util-linux
  # the status page's browser test
  chromium chromium-driver
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "all packages present"
fi
# The Debian package may start a libvirtd in the root namespace through its
# init script. In CI it is stopped: the tests run their own libvirtd inside a
# namespace, and only one may run per machine.
if [ "${CI:-}" = true ] && pgrep -x libvirtd >/dev/null 2>&1; then
  if [ "$(readlink /proc/1/ns/net)" = "$(readlink /proc/"$(pgrep -x -o libvirtd)"/ns/net)" ]; then
    echo "stopping the libvirtd the package started in the root namespace"
    pkill -x libvirtd || true
  fi
fi
