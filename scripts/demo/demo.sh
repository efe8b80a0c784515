#!/usr/bin/env bash
# make demo: jitsu boots a unikernel on a DNS query, end to end, inside two
# network namespaces of its own (see lib.sh for the layout).
#
# As root on Debian 12: installs what is missing, builds jitsu and the example
# unikernel, starts libvirtd and `jitsu serve` in jitsu-demo-host, then from
# jitsu-demo-client does what a user would (dig, then curl at once), prints the
# page and a timeline from jitsu's log, waits for the idle timeout, shows the
# VM stopped, and does a second cold start. Everything is removed on exit,
# Ctrl-C included; `make demo-clean` removes leftovers of a killed run.
#
# Environment:
#   JITSU_DEMO_SKIP_DEPS=1     do not run scripts/install-deps.sh
#   JITSU_DEMO_SKIP_BUILD=1    do not run make build image (use bin/jitsu as is)
#   JITSU_DEMO_IDLE=15s        idle timeout written into the demo config
#   JITSU_DEMO_DOMAIN_TYPE=qemu  libvirt domain type (kvm on hosts where it works)
#   JITSU_DEMO_LOCK_WAIT=0     seconds to wait for /run/jitsu-libvirtd.lock
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

jd_require_root demo

jd_prepare "Building jitsu and the example unikernel" ip flock fuser dig curl virsh libvirtd virtlogd go awk
[ -f "$CONFIG_SRC" ] || jd_die "$CONFIG_SRC is missing"

jd_section "3. Namespaces, bridge, libvirtd and jitsu"
jd_start_fresh
go build -o "$JD_TMP/timeline" ./scripts/demo/timeline
CFG=$JD_TMP/jitsu.toml
LOG=$JD_TMP/jitsu.log
jd_demo_config "$CONFIG_SRC" "$CFG" "$(jd_demo_overrides "$IDLE")"
jd_info "config: $CFG ($CONFIG_SRC with DNS also on $JD_HOST_ADDR:53, idle_timeout $IDLE)"
jd_netns_up
jd_info "namespaces: $JD_HOST_NS ($JD_BRIDGE ${JD_GW_CIDR}, $JD_HOST_VETH $JD_HOST_ADDR/24), $JD_CLIENT_NS ($JD_CLIENT_VETH $JD_CLIENT_ADDR/24)"
jd_libvirtd_up
jd_info "libvirtd pid $(cat "$JD_STATE/libvirtd.pid") in $JD_HOST_NS (holding $JD_LOCK)"
jd_jitsu_up "$JITSU_BIN" "$CFG" "$LOG" "$ZONE"
jd_info "jitsu serve pid $JD_JITSU_PID, log $LOG"
jd_status "$JITSU_BIN" "$CFG"

# cold_request N: dig, then curl at once, from the client namespace; print the
# answer, the page, and the timeline since the query.
cold_request() {
  local t0 t1 t2 t3 w code tconn tfb ttot
  jd_section "$1. Cold start: a client asks for $NAME"
  t0=$(jd_now_ns)
  jd_run jd_in_client dig +noall +answer +comments +stats "@$JD_HOST_ADDR" "$NAME" A |
    grep -E 'status:|flags:|IN[[:space:]]+A|Query time' | sed 's/^/   /'
  t1=$(jd_now_ns)
  w=$(jd_run jd_in_client curl -sS --max-time 60 -o "$JD_TMP/page.html" \
    -w '%{http_code} %{time_connect} %{time_starttransfer} %{time_total}' "http://$NAME/") ||
    jd_die "curl http://$NAME/ failed (jitsu log: $LOG)"
  t3=$(jd_now_ns)
  read -r code tconn tfb ttot <<<"$w"
  jd_info "HTTP $code, connected after ${tconn}s, first byte after ${tfb}s, done after ${ttot}s"
  jd_section "$1. The page"
  sed -e 's/^/   | /' "$JD_TMP/page.html" | head -n 25
  t2=$((t1 + $(jd_sec_to_ns "$tconn")))
  jd_section "$1. Timeline (ms since the DNS query; from jitsu's JSON log and the client)"
  "$JD_TMP/timeline" -log "$LOG" -since "$t0" -until "$t3" -unikernel "$UK" \
    -event "$t0=dig $NAME sent" \
    -event "$t1=dig answered; curl http://$NAME/ starts" \
    -event "$t2=curl: TCP connected" \
    -event "$((t1 + $(jd_sec_to_ns "$tfb")))=curl: first byte of the page" \
    -event "$t3=curl: page received (HTTP $code)"
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
