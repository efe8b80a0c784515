# shellcheck shell=bash
# Shared plumbing for the jitsu demos (demo.sh, vm-per-url.sh, clean.sh):
# two network namespaces, a bridge, a libvirtd of our own inside the host
# namespace, jitsu serve, and a cleanup that removes all of it. Sourced, not
# run. Everything the demos create is named here, so that clean.sh can remove
# it even after a crash or a SIGKILL.
#
#   jitsu-demo-client (10.214.0.2/24)            jitsu-demo-host
#     jd-client0  <------------ veth ---------->  jd-host0 (10.214.0.1/24)
#     resolv.conf: nameserver 10.214.0.1          br-jitsu (10.213.0.1/24) + VM taps
#     route 10.213.0.0/24 via 10.214.0.1          virtlogd, libvirtd, jitsu serve

JD_HOST_NS=jitsu-demo-host
JD_CLIENT_NS=jitsu-demo-client
JD_BRIDGE=br-jitsu
JD_GW_CIDR=10.213.0.1/24
JD_VM_NET=10.213.0.0/24
JD_HOST_VETH=jd-host0
JD_CLIENT_VETH=jd-client0
JD_HOST_ADDR=10.214.0.1
JD_CLIENT_ADDR=10.214.0.2
JD_LOCK=/run/jitsu-libvirtd.lock
# JD_STATE records what a running demo started (pids, temp dirs).
JD_STATE=/run/jitsu-demo
JD_NETNS_ETC=/etc/netns/$JD_CLIENT_NS
JD_LIBVIRT_URI=qemu:///system
JD_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

JD_JITSU_PID=
JD_TMP=

# ---- output ---------------------------------------------------------------

if [ -t 1 ]; then
  JD_BOLD=$'\e[1m' JD_DIM=$'\e[2m' JD_RED=$'\e[31m' JD_OFF=$'\e[0m'
else
  JD_BOLD='' JD_DIM='' JD_RED='' JD_OFF=''
fi

# jd_section TITLE: a short headed section.
jd_section() { printf '\n%s== %s%s\n' "$JD_BOLD" "$*" "$JD_OFF"; }
# jd_info TEXT: one line of progress.
jd_info() { printf '   %s\n' "$*"; }
# jd_run CMD...: print a command as a user would type it, then run it.
# The command line goes to stderr, so that $(jd_run ...) captures only output.
# jd_in_host, jd_in_client and jd_virsh are shown as the commands they run.
jd_run() {
  local shown="$*"
  shown=${shown/#jd_in_host /ip netns exec $JD_HOST_NS }
  shown=${shown/#jd_in_client /ip netns exec $JD_CLIENT_NS }
  shown=${shown/#jd_virsh /ip netns exec $JD_HOST_NS virsh -c $JD_LIBVIRT_URI }
  printf '%s   $ %s%s\n' "$JD_DIM" "$shown" "$JD_OFF" >&2
  "$@"
}
# jd_die TEXT: print an error and exit 1 (the EXIT trap cleans up).
jd_die() { printf '%sjitsu demo: %s%s\n' "$JD_RED" "$*" "$JD_OFF" >&2; exit 1; }

# jd_now_ns prints the wall clock in Unix nanoseconds.
jd_now_ns() { date +%s%N; }
# jd_sec_to_ns SECONDS prints a decimal number of seconds (curl's timings)
# in whole nanoseconds.
jd_sec_to_ns() { awk -v s="$1" 'BEGIN { printf "%.0f", s * 1e9 }'; }

# ---- preconditions --------------------------------------------------------

jd_require_root() {
  [ "$(id -u)" -eq 0 ] || jd_die "run as root (namespaces, bridges and libvirtd need it): sudo make ${1:-demo}"
}

# jd_require_tools CMD...: fail with the package to install for each missing command.
jd_require_tools() {
  local c missing=()
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] || jd_die "missing commands: ${missing[*]} (run ./scripts/install-deps.sh)"
}

# jd_netns_inode NS prints the inode of a named network namespace.
jd_netns_inode() { stat -L -c %i "/run/netns/$1" 2>/dev/null; }

# jd_pid_in_ns PID NS succeeds when PID lives in the named network namespace.
jd_pid_in_ns() {
  local want have
  want=$(jd_netns_inode "$2") || return 1
  have=$(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null) || return 1
  [ -n "$want" ] && [ "$want" = "$have" ]
}

# jd_take_lock takes /run/jitsu-libvirtd.lock (flock) on fd JD_LOCK_FD for as
# long as our libvirtd runs, and refuses if another libvirtd runs. The lock is
# inherited by the daemons we start, so that it stays held while they run even
# if this script is killed; clean.sh releases it by stopping them.
# JITSU_DEMO_LOCK_WAIT=SECONDS waits for the lock instead of refusing at once.
jd_take_lock() {
  exec {JD_LOCK_FD}>>"$JD_LOCK"
  if ! flock -w "${JITSU_DEMO_LOCK_WAIT:-0}" "$JD_LOCK_FD"; then
    local holders
    exec {JD_LOCK_FD}>&-
    JD_LOCK_FD=
    holders=$(fuser "$JD_LOCK" 2>/dev/null | xargs -r ps -o pid=,comm= -p 2>/dev/null | xargs)
    if [ -e "/run/netns/$JD_HOST_NS" ]; then
      jd_die "$JD_LOCK is held (${holders:-unknown holder}), and the demo's namespaces exist: another demo is running, or one was killed. Run 'make demo-clean' if none is running."
    fi
    jd_die "$JD_LOCK is held by another libvirtd user (${holders:-unknown}): only one libvirtd may run per machine. Wait for it to finish (or set JITSU_DEMO_LOCK_WAIT=SECONDS) and retry."
  fi
  local pid
  pid=$(pgrep -x -o libvirtd || true)
  if [ -n "$pid" ]; then
    jd_die "a libvirtd is already running (pid $pid, net namespace $(readlink "/proc/$pid/ns/net")): only one may run per machine. Stop it first (if it is a demo's leftover: make demo-clean)."
  fi
}

# ---- namespaces -----------------------------------------------------------

# jd_netns_up creates both namespaces, the bridge, the veth pair, addresses,
# routes and the client's resolv.conf.
jd_netns_up() {
  mkdir -p "$JD_STATE"
  ip netns add "$JD_HOST_NS"
  ip netns add "$JD_CLIENT_NS"
  local H=(ip -n "$JD_HOST_NS") C=(ip -n "$JD_CLIENT_NS")
  "${H[@]}" link set lo up
  "${C[@]}" link set lo up
  # The bridge the VMs' taps join; jitsu's gateway address lives on it.
  "${H[@]}" link add "$JD_BRIDGE" type bridge
  "${H[@]}" addr add "$JD_GW_CIDR" dev "$JD_BRIDGE"
  "${H[@]}" link set "$JD_BRIDGE" up
  # The client's link to the host namespace.
  "${H[@]}" link add "$JD_HOST_VETH" type veth peer name "$JD_CLIENT_VETH" netns "$JD_CLIENT_NS"
  "${H[@]}" addr add "$JD_HOST_ADDR/24" dev "$JD_HOST_VETH"
  "${H[@]}" link set "$JD_HOST_VETH" up
  "${C[@]}" addr add "$JD_CLIENT_ADDR/24" dev "$JD_CLIENT_VETH"
  "${C[@]}" link set "$JD_CLIENT_VETH" up
  "${C[@]}" route add "$JD_VM_NET" via "$JD_HOST_ADDR"
  ip netns exec "$JD_HOST_NS" sysctl -q -w net.ipv4.ip_forward=1
  # `ip netns exec jitsu-demo-client ...` bind-mounts this over /etc/resolv.conf.
  mkdir -p "$JD_NETNS_ETC"
  printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$JD_HOST_ADDR" >"$JD_NETNS_ETC/resolv.conf"
}

# jd_in_host CMD...: run a command inside the host namespace.
jd_in_host() { ip netns exec "$JD_HOST_NS" "$@"; }
# jd_in_client CMD...: run a command inside the client namespace.
jd_in_client() { ip netns exec "$JD_CLIENT_NS" "$@"; }

# ---- libvirtd -------------------------------------------------------------

# jd_libvirtd_up starts virtlogd (unless one runs) and libvirtd inside the host
# namespace and waits until libvirtd answers.
jd_libvirtd_up() {
  mkdir -p "$JD_STATE"
  local _ pid=
  if ! pgrep -x virtlogd >/dev/null; then
    jd_in_host virtlogd -d
    for _ in $(seq 50); do pid=$(jd_ns_pid "$JD_HOST_NS" virtlogd) && break; sleep 0.1; done
    [ -n "$pid" ] && echo "$pid" >"$JD_STATE/virtlogd.pid"
  fi
  jd_in_host libvirtd -d
  pid=
  for _ in $(seq 300); do
    if [ -z "$pid" ]; then pid=$(jd_ns_pid "$JD_HOST_NS" libvirtd) && echo "$pid" >"$JD_STATE/libvirtd.pid"; fi
    if [ -n "$pid" ] && virsh -q -c "$JD_LIBVIRT_URI" version >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  [ -n "$pid" ] || jd_die "libvirtd did not start (see /var/log/libvirt/libvirtd.log)"
  jd_die "libvirtd (pid $pid) does not answer on $JD_LIBVIRT_URI after 30 s"
}

# jd_ns_pid NS COMM prints the oldest process called COMM inside NS.
jd_ns_pid() {
  local p
  for p in $(pgrep -x "$2"); do
    if jd_pid_in_ns "$p" "$1"; then echo "$p"; return 0; fi
  done
  return 1
}

# jd_virsh ARGS...: virsh against our libvirtd, run inside the host namespace.
jd_virsh() { jd_in_host virsh -q -c "$JD_LIBVIRT_URI" "$@"; }

# jd_destroy_domains destroys every running domain of our libvirtd and
# undefines the persistent ones jitsu defined (they carry jitsu's metadata).
jd_destroy_domains() {
  local pid d
  pid=$(cat "$JD_STATE/libvirtd.pid" 2>/dev/null || true)
  [ -n "$pid" ] && jd_pid_in_ns "$pid" "$JD_HOST_NS" || return 0
  for d in $(timeout 10 virsh -q -c "$JD_LIBVIRT_URI" list --name 2>/dev/null); do
    timeout 10 virsh -q -c "$JD_LIBVIRT_URI" destroy "$d" >/dev/null 2>&1 || true
  done
  for d in $(timeout 10 virsh -q -c "$JD_LIBVIRT_URI" list --all --name 2>/dev/null); do
    if timeout 10 virsh -q -c "$JD_LIBVIRT_URI" dumpxml "$d" 2>/dev/null | grep -q 'jitsu-unikernel'; then
      timeout 10 virsh -q -c "$JD_LIBVIRT_URI" undefine --managed-save "$d" >/dev/null 2>&1 || true
    fi
  done
}

# jd_kill_pid PID [NAME]: SIGTERM, wait up to 5 s, then SIGKILL.
jd_kill_pid() {
  local pid=$1 _
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

# ---- jitsu ----------------------------------------------------------------

# jd_demo_config SRC DST OVERRIDES: writes DST, a copy of the jitsu config
# SRC with some keys set; OVERRIDES is "SECTION.KEY=TOML;..." as
# toml-override.awk takes it ("*.idle_timeout=..." sets it everywhere).
jd_demo_config() {
  awk -v overrides="$3" -f "$JD_LIB_DIR/toml-override.awk" "$1" >"$2" ||
    jd_die "could not derive $2 from $1"
}

# jd_demo_overrides IDLE: the overrides every demo applies to its config:
# DNS also on the client-facing veth, its own control socket, TCG unless
# JITSU_DEMO_DOMAIN_TYPE says otherwise, and a short idle timeout.
jd_demo_overrides() {
  printf '%s' "dns.listen=[\"127.0.0.1:5353\", \"$JD_HOST_ADDR:53\"];"
  printf '%s' "hypervisor.domain_type=\"${JITSU_DEMO_DOMAIN_TYPE:-qemu}\";"
  printf '%s' "control.socket=\"$JD_STATE/control.sock\";"
  printf '%s' "network.bridge=\"$JD_BRIDGE\";network.gateway=\"$JD_GW_CIDR\";"
  printf '%s' "*.idle_timeout=\"$1\""
}

# jd_jitsu_up BIN CONFIG LOG: starts `jitsu serve` inside the host namespace,
# logging JSON lines to LOG, and waits until its DNS server answers the zone's
# SOA (which boots nothing) on JD_HOST_ADDR:53.
jd_jitsu_up() {
  local bin=$1 cfg=$2 log=$3 zone=$4
  "$bin" check --config "$cfg" >/dev/null || { "$bin" check --config "$cfg"; jd_die "config $cfg does not validate"; }
  ip netns exec "$JD_HOST_NS" "$bin" serve --config "$cfg" 2>>"$log" &
  JD_JITSU_PID=$!
  echo "$JD_JITSU_PID" >"$JD_STATE/jitsu.pid"
  local _
  for _ in $(seq 100); do
    if ! kill -0 "$JD_JITSU_PID" 2>/dev/null; then
      tail -n 20 "$log" >&2
      jd_die "jitsu serve exited at start (log: $log)"
    fi
    if jd_in_client dig +short +time=1 +tries=1 "@$JD_HOST_ADDR" SOA "$zone" 2>/dev/null | grep -q .; then
      return 0
    fi
    sleep 0.2
  done
  tail -n 20 "$log" >&2
  jd_die "jitsu serve does not answer DNS on $JD_HOST_ADDR:53 after 20 s (log: $log)"
}

# jd_status BIN CONFIG: what jitsu and libvirt say is running.
jd_status() {
  local bin=$1 cfg=$2
  jd_run jd_in_host "$bin" status --config "$cfg" 2>/dev/null ||
    jd_run jd_in_host "$bin" status || true
  jd_run jd_virsh list --all || true
}

# ---- temp dir and cleanup -------------------------------------------------

# jd_mktemp creates the run's temp dir (JD_TMP), recorded for clean.sh.
jd_mktemp() {
  mkdir -p "$JD_STATE"
  JD_TMP=$(mktemp -d /tmp/jitsu-demo.XXXXXX)
  echo "$JD_TMP" >>"$JD_STATE/tmpdirs"
}

# jd_cleanup removes everything a demo may have created: jitsu, the domains,
# the libvirtd and virtlogd it started, every process left in the demo's
# namespaces, the namespaces, /etc/netns/jitsu-demo-client, temp dirs and the
# state dir. Idempotent; safe when nothing exists. KEEP_TMP=1 keeps temp dirs.
jd_cleanup() {
  local pid ns d
  # jitsu first, so that it does not restart what we destroy.
  pid=${JD_JITSU_PID:-$(cat "$JD_STATE/jitsu.pid" 2>/dev/null || true)}
  if [ -n "$pid" ] && jd_pid_in_ns "$pid" "$JD_HOST_NS"; then jd_kill_pid "$pid"; fi
  jd_destroy_domains
  pid=$(cat "$JD_STATE/libvirtd.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && jd_pid_in_ns "$pid" "$JD_HOST_NS"; then jd_kill_pid "$pid"; fi
  pid=$(cat "$JD_STATE/virtlogd.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && jd_pid_in_ns "$pid" "$JD_HOST_NS"; then jd_kill_pid "$pid"; fi
  # Anything else still inside our namespaces is ours (QEMU, probes, dig).
  for ns in "$JD_HOST_NS" "$JD_CLIENT_NS"; do
    [ -e "/run/netns/$ns" ] || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do jd_kill_pid "$pid"; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$JD_NETNS_ETC"
  rmdir /etc/netns 2>/dev/null || true
  if [ "${KEEP_TMP:-0}" != 1 ] && [ -f "$JD_STATE/tmpdirs" ]; then
    while read -r d; do
      case $d in /tmp/jitsu-demo.*) rm -rf "$d" ;; esac
    done <"$JD_STATE/tmpdirs"
  fi
  rm -rf "$JD_STATE"
  if [ -n "${JD_LOCK_FD:-}" ]; then exec {JD_LOCK_FD}>&-; JD_LOCK_FD=; fi
  return 0
}

# jd_on_exit cleans up and exits with the script's status.
jd_on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  jd_section "Cleaning up"
  jd_cleanup
  jd_info "done"
  exit "$rc"
}

# jd_trap_cleanup installs the EXIT/INT/TERM trap every demo uses.
jd_trap_cleanup() {
  trap jd_on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# jd_prepare TITLE TOOLS...: the first steps of every demo: install what is
# missing (section 1), build jitsu and the example unikernel (section 2),
# check the tools the demo runs.
jd_prepare() {
  local title=$1; shift
  jd_section "1. Dependencies"
  if [ "${JITSU_DEMO_SKIP_DEPS:-0}" = 1 ]; then
    jd_info "skipped (JITSU_DEMO_SKIP_DEPS=1)"
  else
    ./scripts/install-deps.sh
  fi
  jd_require_tools "$@"
  jd_section "2. $title"
  if [ "${JITSU_DEMO_SKIP_BUILD:-0}" = 1 ]; then
    jd_info "skipped (JITSU_DEMO_SKIP_BUILD=1)"
  else
    jd_run make --no-print-directory build image
  fi
  [ -x "$JITSU_BIN" ] || jd_die "$JITSU_BIN is missing: run make build"
}

# jd_start_fresh: takes the libvirtd lock, removes what an earlier,
# interrupted demo left, and arms the cleanup and the temp directory.
jd_start_fresh() {
  jd_take_lock
  if [ -e "/run/netns/$JD_HOST_NS" ] || [ -e "/run/netns/$JD_CLIENT_NS" ] || [ -d "$JD_STATE" ]; then
    jd_info "removing what an earlier, interrupted demo left behind"
    jd_cleanup
    jd_take_lock
  fi
  jd_trap_cleanup
  jd_mktemp
}
