# shellcheck shell=bash
# Shared plumbing for the jitsu demos (demo.sh, vm-per-url.sh, clean.sh).
# Sourced, not run. The sandbox itself (the lock, both namespaces, the
# bridge, the veth pair, the client's resolv.conf, virtlogd and libvirtd,
# and removing all of it on every exit path) is jitsu's one Go
# implementation, bin/jitsu-sandbox (internal/sandbox): a demo prepares,
# then re-runs itself under `jitsu-sandbox run` (jd_enter_sandbox) and only
# starts jitsu and its clients.
#
#   jitsu-demo-client (10.214.0.2/24)            jitsu-demo-host
#     jsb-client0 <------------ veth ---------->  jsb-host0 (10.214.0.1/24)
#     resolv.conf: nameserver 10.214.0.1          br-jitsu (10.213.0.1/24) + VM taps
#     route 10.213.0.0/24 via 10.214.0.1          virtlogd, libvirtd, jitsu serve

JD_HOST_NS=jitsu-demo-host
JD_CLIENT_NS=jitsu-demo-client
JD_HOST_ADDR=10.214.0.1
JD_LOCK=/run/jitsu-libvirtd.lock
# JD_STATE records what a running demo started (jitsu's pid, temp dirs).
JD_STATE=/run/jitsu-demo
JD_LIBVIRT_URI=qemu:///system
JD_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
JD_SANDBOX_BIN=$(cd "$JD_LIB_DIR/../.." && pwd)/bin/jitsu-sandbox

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

# jd_in_host CMD...: run a command inside the host namespace.
jd_in_host() { ip netns exec "$JD_HOST_NS" "$@"; }
# jd_in_client CMD...: run a command inside the client namespace.
jd_in_client() { ip netns exec "$JD_CLIENT_NS" "$@"; }

# ---- libvirtd -------------------------------------------------------------

# jd_virsh ARGS...: virsh against our libvirtd, run inside the host namespace.
jd_virsh() { jd_in_host virsh -q -c "$JD_LIBVIRT_URI" "$@"; }

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
  printf '%s' "network.bridge=\"$JITSU_SANDBOX_BRIDGE\";network.gateway=\"$JITSU_SANDBOX_GATEWAY\";"
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

# jd_cleanup stops jitsu (so that it removes its nft table and neighbour
# entries itself) and removes the run's temp dirs and state dir; the
# sandbox removes the rest when the demo exits. Idempotent. KEEP_TMP=1
# keeps temp dirs.
jd_cleanup() {
  local pid d
  pid=${JD_JITSU_PID:-$(cat "$JD_STATE/jitsu.pid" 2>/dev/null || true)}
  if [ -n "$pid" ] && jd_pid_in_ns "$pid" "$JD_HOST_NS"; then jd_kill_pid "$pid"; fi
  if [ "${KEEP_TMP:-0}" != 1 ] && [ -f "$JD_STATE/tmpdirs" ]; then
    while read -r d; do
      case $d in /tmp/jitsu-demo.*) rm -rf "$d" ;; esac
    done <"$JD_STATE/tmpdirs"
  fi
  rm -rf "$JD_STATE"
  return 0
}

# jd_on_exit cleans up and exits with the script's status.
jd_on_exit() {
  local rc=$?
  # jitsu-sandbox passes on a signal it got: cleanup is not interrupted.
  trap - EXIT
  trap '' INT TERM
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

# jd_enter_sandbox SCRIPT ARGS...: unless already inside, re-runs SCRIPT
# under bin/jitsu-sandbox with the demo's namespaces, and exits with its
# status. The sandbox waits JITSU_DEMO_LOCK_WAIT seconds (default 600) for
# /run/jitsu-libvirtd.lock, removes what a killed sandbox left, and removes
# everything again when the script exits, however it exits.
jd_enter_sandbox() {
  [ -n "${JITSU_SANDBOX_NS:-}" ] && return 0
  jd_run make --no-print-directory bin/jitsu-sandbox >/dev/null
  jd_info "entering the sandbox: $JD_HOST_NS (bridge, libvirtd) and $JD_CLIENT_NS, under $JD_LOCK"
  local rc=0
  "$JD_SANDBOX_BIN" run -ns "$JD_HOST_NS" -client "$JD_CLIENT_NS" -wait "${JITSU_DEMO_LOCK_WAIT:-600}s" -- "$@" || rc=$?
  exit "$rc"
}

# jd_start_inside: inside the sandbox, removes what an earlier, killed demo
# left in the state dir, and arms the cleanup and the temp directory.
jd_start_inside() {
  [ "${JITSU_SANDBOX_NS:-}" = "$JD_HOST_NS" ] || jd_die "not inside the demo's sandbox"
  if [ -d "$JD_STATE" ]; then jd_cleanup; fi
  jd_trap_cleanup
  jd_mktemp
  jd_info "libvirtd pid $JITSU_SANDBOX_LIBVIRTD_PID in $JD_HOST_NS; client namespace $JD_CLIENT_NS ($JITSU_SANDBOX_CLIENT_ADDR)"
}
