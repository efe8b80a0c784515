#!/usr/bin/env bash
# make demo-vm-per-url: the experiment "A unikernel experiment: A VM for every
# URL". Cuts examples/vm-per-url/site into one unikernel per file (each image
# holds only its own file), serves them with jitsu inside the demo namespaces
# (see lib.sh), crawls the site from the client namespace through jitsu's DNS,
# printing which VM booted for which URL and how long each first byte took,
# then waits for the idle timeout and prints which VMs idled out. Everything
# is removed on exit; `make demo-clean` removes leftovers of a killed run.
#
# Environment: as demo.sh (JITSU_DEMO_SKIP_DEPS, JITSU_DEMO_SKIP_BUILD,
# JITSU_DEMO_DOMAIN_TYPE, JITSU_DEMO_LOCK_WAIT, KEEP_TMP), and
#   JITSU_DEMO_IDLE=20s   idle timeout of every page's unikernel
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
# shellcheck source=scripts/demo/lib.sh
. scripts/demo/lib.sh

IDLE=${JITSU_DEMO_IDLE:-20s}
ZONE=example.test
SITE=examples/vm-per-url/site
IMAGES=/var/lib/jitsu/images/vm-per-url
KERNEL=/var/lib/jitsu/images/example/vmlinux
export PATH=/usr/local/go/bin:$PATH
JITSU_BIN=${JITSU_DEMO_BIN:-$REPO/bin/jitsu}

if [ -z "${JITSU_SANDBOX_NS:-}" ]; then
  jd_require_root demo-vm-per-url
  jd_prepare "Building jitsu and the example kernel" ip dig virsh go awk
  [ -r "$KERNEL" ] || jd_die "$KERNEL is missing: run make image"
  jd_section "3. Sandbox: namespaces, bridge, libvirtd"
  jd_enter_sandbox "$0" "$@" # runs this script again inside, and exits
fi

jd_section "4. One unikernel per URL of $SITE, and jitsu"
jd_start_inside
OUT=$JD_TMP/vm-per-url
CFG=$OUT/jitsu.toml
LOG=$JD_TMP/jitsu.log
go build -o "$JD_TMP/timeline" ./scripts/demo/timeline
go build -o "$JD_TMP/crawl" ./examples/vm-per-url/crawl
jd_run go run ./examples/vm-per-url/build -site "$SITE" -out "$OUT" -images "$IMAGES" \
  -zone "$ZONE." -net 10.213.0.0/24 -gateway 10.213.0.1 -kernel "$KERNEL" \
  -listen "127.0.0.1:5353,$JD_HOST_ADDR:53" -idle "$IDLE" \
  -domain-type "${JITSU_DEMO_DOMAIN_TYPE:-qemu}" -control "$JD_STATE/control.sock" | sed 's/^/   /'
jd_info "each image holds its one file (cpio -it < $IMAGES/p-about.cpio lists it)"
jd_jitsu_up "$JITSU_BIN" "$CFG" "$LOG" "$ZONE"
jd_info "jitsu serve pid $JD_JITSU_PID, log $LOG"
jd_status "$JITSU_BIN" "$CFG"

jd_section "5. Crawling http://p-index.example.test/ from $JD_CLIENT_NS (every first fetch boots a VM)"
t0=$(jd_now_ns)
crawl_rc=0
jd_run jd_in_client "$JD_TMP/crawl" -start "http://p-index.$ZONE/" -dns "$JD_HOST_ADDR:53" -zone "$ZONE" || crawl_rc=$?
t1=$(jd_now_ns)

jd_section "6. What jitsu did during the crawl (ms since the crawl started)"
"$JD_TMP/timeline" -log "$LOG" -since "$t0" -until "$t1"
jd_status "$JITSU_BIN" "$CFG"
[ "$crawl_rc" -eq 0 ] || jd_die "the crawl failed (exit $crawl_rc); jitsu's log: $LOG"

jd_section "7. Waiting for the idle timeout ($IDLE)"
start=$(jd_now_ns)
while :; do
  running=$(jd_virsh list --name 2>/dev/null | grep -c . || true)
  now=$(jd_now_ns)
  [ "$running" -eq 0 ] && break
  if [ $(((now - start) / 1000000000)) -gt 240 ]; then jd_die "$running VMs still running after 240 s"; fi
  sleep 1
done
jd_info "no VM running any more, $(((now - start) / 1000000)) ms after the crawl ended. Idled out:"
"$JD_TMP/timeline" -log "$LOG" -since "$t1" -idled | sed 's/^/     /'
"$JD_TMP/timeline" -log "$LOG" -since "$t1"
jd_status "$JITSU_BIN" "$CFG"

jd_section "Done"
jd_info "jitsu's full log: $LOG, generated config: $CFG (kept with KEEP_TMP=1)"
