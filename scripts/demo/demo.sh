#!/usr/bin/env bash
# make demo: jitsu boots a unikernel on a DNS query, end to end, inside two
# network namespaces of its own (see lib.sh for the layout).
#
# As root on Debian 12: installs what is missing, builds jitsu and the example
# unikernel, enters the sandbox (bin/jitsu-sandbox: namespaces, bridge,
# libvirtd), starts `jitsu serve` in jitsu-demo-host, then from
# jitsu-demo-client does what a user would (a DNS query, then a GET at once,
# scripts/demo/client, which stamps each event with its own clock when it
# happens), prints the page and one timeline of the client's events and
# jitsu's log, waits for the idle timeout, shows the VM stopped, and does a
# second cold start. Everything is removed on exit, Ctrl-C included;
# `make demo-clean` removes leftovers of a killed run.
#
# Environment:
#   JITSU_DEMO_SKIP_DEPS=1     do not run scripts/install-deps.sh
#   JITSU_DEMO_SKIP_BUILD=1    do not run make build image (use bin/jitsu as is)
#   JITSU_DEMO_IDLE=15s        idle timeout written into the demo config
#   JITSU_DEMO_DOMAIN_TYPE=qemu  libvirt domain type (kvm on hosts where it works)
#   JITSU_DEMO_LOCK_WAIT=600   seconds to wait for /run/jitsu-libvirtd.lock
#   JITSU_DEMO_BIN=bin/jitsu  the jitsu binary to run
#   KEEP_TMP=1                 keep the temp dir (config, jitsu.log) after exit
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
# shellcheck source=scripts/demo/lib.sh
. scripts/demo/lib.sh

CONFIG_SRC=${JITSU_DEMO_CONFIG:-examples/jitsu.toml}
IDLE=${JITSU_DEMO_IDLE:-15s}
UK=${JITSU_DEMO_UNIKERNEL:-www}
NAME=${JITSU_DEMO_NAME:-www.example.test}
ZONE=${JITSU_DEMO_ZONE:-example.test}
export PATH=/usr/local/go/bin:$PATH
JITSU_BIN=${JITSU_DEMO_BIN:-$REPO/bin/jitsu}

if [ -z "${JITSU_SANDBOX_NS:-}" ]; then
  jd_require_root demo
  jd_prepare "Building jitsu and the example unikernel" ip dig virsh go awk
  [ -f "$CONFIG_SRC" ] || jd_die "$CONFIG_SRC is missing"
  jd_section "3. Sandbox: namespaces, bridge, libvirtd; then jitsu"
  jd_enter_sandbox "$0" "$@" # runs this script again inside, and exits
fi

jd_start_inside
go build -o "$JD_TMP/timeline" ./scripts/demo/timeline
go build -o "$JD_TMP/client" ./scripts/demo/client
CFG=$JD_TMP/jitsu.toml
LOG=$JD_TMP/jitsu.log
jd_demo_config "$CONFIG_SRC" "$CFG" "$(jd_demo_overrides "$IDLE")"
jd_info "config: $CFG ($CONFIG_SRC with DNS also on $JD_HOST_ADDR:53, idle_timeout $IDLE)"
jd_jitsu_up "$JITSU_BIN" "$CFG" "$LOG" "$ZONE"
jd_info "jitsu serve pid $JD_JITSU_PID, log $LOG"
jd_status "$JITSU_BIN" "$CFG"

# cold_request N: from the client namespace, the client asks jitsu for the
# name and GETs the page at once; print the page, and the timeline of the
# client's own stamps and jitsu's log since the query.
cold_request() {
  local t0 t1 ev
  local -a events=()
  jd_section "$1. Cold start: a client asks for $NAME, then GETs http://$NAME/ at once"
  t0=$(jd_now_ns)
  jd_run jd_in_client "$JD_TMP/client" -dns "$JD_HOST_ADDR:53" -name "$NAME" \
    -out "$JD_TMP/page.html" -events "$JD_TMP/events" | sed 's/^/   /' ||
    jd_die "the client failed (jitsu log: $LOG)"
  t1=$(jd_now_ns)
  jd_section "$1. The page"
  sed -e 's/^/   | /' "$JD_TMP/page.html" | head -n 25
  while IFS= read -r ev; do events+=(-event "$ev"); done <"$JD_TMP/events"
  jd_section "$1. Timeline (ms since the DNS query; the client's stamps and jitsu's JSON log)"
  "$JD_TMP/timeline" -log "$LOG" -since "$t0" -until "$t1" -unikernel "$UK" "${events[@]}"
}

# wait_idle: wait until no domain runs any more, printing the time.
wait_idle() {
  local start now running
  jd_section "$1. Waiting for the idle timeout ($IDLE)"
  start=$(jd_now_ns)
  while :; do
    running=$(jd_virsh list --name 2>/dev/null | grep -c . || true)
    now=$(jd_now_ns)
    [ "$running" -eq 0 ] && break
    if [ $(((now - start) / 1000000000)) -gt 180 ]; then jd_die "the VM was still running after 180 s"; fi
    sleep 0.5
  done
  jd_info "no domain running any more, $(((now - start) / 1000000)) ms after the page was served:"
  "$JD_TMP/timeline" -log "$LOG" -since "$start" -unikernel "$UK"
  jd_status "$JITSU_BIN" "$CFG"
}

cold_request 4
wait_idle 5
cold_request 6

jd_section "Done"
jd_info "jitsu's full log: $LOG (kept with KEEP_TMP=1)"
