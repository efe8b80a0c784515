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
# second cold start. Then the front door: a second unikernel, blog, with
# frontdoor = true and a certificate signed by a CA the demo makes
# (scripts/demo/certs); its A record answers the front door's address, and
# the client's HTTPS GET is routed by its TLS SNI to blog, booted cold, with
# the TLS handshake end to end with the guest (the client checks the
# certificate against the demo CA). Last, the warm pool: a third unikernel,
# fast, with warm = true, waits as a paused domain (QEMU started, kernel
# loaded, no guest instruction run); the client fetches it cold and the
# timeline shows its start mode, warm: a resume, beside the boots of www
# above. Everything is removed on exit, Ctrl-C included;
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
go build -o "$JD_TMP/certs" ./scripts/demo/certs
CFG=$JD_TMP/jitsu.toml
LOG=$JD_TMP/jitsu.log
FD_UK=${JITSU_DEMO_FRONTDOOR_UNIKERNEL:-blog}
FD_NAME=${JITSU_DEMO_FRONTDOOR_NAME:-blog.example.test}
FD_IP=${JITSU_DEMO_FRONTDOOR_IP:-10.213.0.7}
WARM_UK=${JITSU_DEMO_WARM_UNIKERNEL:-fast}
WARM_NAME=${JITSU_DEMO_WARM_NAME:-fast.example.test}
WARM_IP=${JITSU_DEMO_WARM_IP:-10.213.0.8}
mkdir -p "$JD_TMP/tls"
"$JD_TMP/certs" -dir "$JD_TMP/tls" -name "$FD_NAME"
jd_demo_config "$CONFIG_SRC" "$CFG" "$(jd_demo_overrides "$IDLE");frontdoor.listen=[\"$JD_HOST_ADDR:443\"];frontdoor.tls_ports=[443]"
# blog: the example image again, behind the front door, with its
# certificate and key as seed files (the image serves HTTPS on 443).
cat >>"$CFG" <<TOML

[[unikernel]]
name = "$FD_UK"
dns = ["$FD_NAME."]
ip = "$FD_IP"
kernel = "/var/lib/jitsu/images/example/vmlinux"
initrd = "/var/lib/jitsu/images/example/initrd.cpio"
cmdline = "console=ttyS0 quiet noapictimer no_timer_check tsc=reliable ip={{.IP}}::{{.Gateway}}:{{.Netmask}}::eth0:off jitsu.name={{.Name}}"
frontdoor = true
files = { "tls/cert.pem" = "$JD_TMP/tls/cert.pem", "tls/key.pem" = "$JD_TMP/tls/key.pem" }

# fast: the example image again, in the warm pool: while stopped, a paused
# domain waits, and a summon resumes it.
[[unikernel]]
name = "$WARM_UK"
dns = ["$WARM_NAME."]
ip = "$WARM_IP"
kernel = "/var/lib/jitsu/images/example/vmlinux"
initrd = "/var/lib/jitsu/images/example/initrd.cpio"
cmdline = "console=ttyS0 quiet noapictimer no_timer_check tsc=reliable ip={{.IP}}::{{.Gateway}}:{{.Netmask}}::eth0:off jitsu.name={{.Name}}"
warm = true
TOML
jd_info "config: $CFG ($CONFIG_SRC with DNS also on $JD_HOST_ADDR:53, idle_timeout $IDLE;"
jd_info "  the front door on $JD_HOST_ADDR:443 for $FD_UK ($FD_NAME, certificate from the demo CA $JD_TMP/tls/ca.pem),"
jd_info "  $WARM_UK ($WARM_NAME) with warm = true)"
jd_jitsu_up "$JITSU_BIN" "$CFG" "$LOG" "$ZONE"
jd_info "jitsu serve pid $JD_JITSU_PID, log $LOG"
jd_status "$JITSU_BIN" "$CFG"

# cold_request N [UNIKERNEL NAME CLIENT-FLAGS...]: from the client
# namespace, the client asks jitsu for the name and GETs the page at once;
# print the page, and the timeline of the client's own stamps and jitsu's
# log since the query. By default UK's NAME over HTTP.
cold_request() {
  local n=$1 uk=${2:-$UK} name=${3:-$NAME} t0 t1 ev url
  shift $(($# < 3 ? $# : 3))
  local -a events=()
  url=http://$name/
  case " $* " in *" -https "*) url=https://$name/ ;; esac
  jd_section "$n. Cold start: a client asks for $name, then GETs $url at once"
  t0=$(jd_now_ns)
  jd_run jd_in_client "$JD_TMP/client" -dns "$JD_HOST_ADDR:53" -name "$name" "$@" \
    -out "$JD_TMP/page.html" -events "$JD_TMP/events" | sed 's/^/   /' ||
    jd_die "the client failed (jitsu log: $LOG)"
  t1=$(jd_now_ns)
  jd_section "$n. The page"
  sed -e 's/^/   | /' "$JD_TMP/page.html" | head -n 25
  while IFS= read -r ev; do events+=(-event "$ev"); done <"$JD_TMP/events"
  jd_section "$n. Timeline (ms since the DNS query; the client's stamps and jitsu's JSON log)"
  "$JD_TMP/timeline" -log "$LOG" -since "$t0" -until "$t1" -unikernel "$uk" "${events[@]}"
}

# wait_idle: wait until no domain runs any more (a warm pool's paused
# domain does not run), printing the time.
wait_idle() {
  local start now running
  jd_section "$1. Waiting for the idle timeout ($IDLE)"
  start=$(jd_now_ns)
  while :; do
    running=$(jd_virsh list --name --state-running 2>/dev/null | grep -c . || true)
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
# The front door: the DNS answer is the front door's address, the HTTPS
# connection is routed by its SNI to blog, booted cold, and TLS is
# end to end with the guest.
cold_request 7 "$FD_UK" "$FD_NAME" -https -ca "$JD_TMP/tls/ca.pem"

# wait_warm N: wait until jitsu reports the warm unikernel warm (its paused
# domain prepared), and show it.
wait_warm() {
  local start now
  jd_section "$1. The warm pool: $WARM_UK (warm = true) waits as a paused domain"
  start=$(jd_now_ns)
  until jd_in_host "$JITSU_BIN" status --config "$CFG" 2>/dev/null | grep -Eq "^$WARM_UK +warm "; do
    now=$(jd_now_ns)
    if [ $(((now - start) / 1000000000)) -gt 120 ]; then jd_die "$WARM_UK was not warm after 120 s (jitsu log: $LOG)"; fi
    sleep 0.5
  done
  jd_status "$JITSU_BIN" "$CFG"
}

# The warm pool: the same cold fetch as step 4, of a unikernel whose
# domain was prepared paused; its start is a resume (start mode warm).
wait_warm 8
cold_request 9 "$WARM_UK" "$WARM_NAME"
jd_section "9. Boots (www, $FD_UK) beside the warm pool ($WARM_UK): LAST-BOOT is start call → ready"
jd_status "$JITSU_BIN" "$CFG"

jd_section "Done"
jd_info "jitsu's full log: $LOG (kept with KEEP_TMP=1)"
