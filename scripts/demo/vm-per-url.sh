#!/usr/bin/env bash
# make demo-vm-per-url: the experiment "A unikernel experiment: A VM for every
# URL". Cuts examples/vm-per-url/site into one unikernel per file (each image
# holds only its own file), serves them with jitsu inside the demo namespaces
# (see lib.sh), crawls the site from the client namespace through jitsu's DNS,
# printing which VM booted for which URL and how long each first byte took,
# then waits for the idle timeout and prints which VMs idled out. Everything
# is removed on exit; `make demo-clean` removes leftovers of a killed run.
#
# Last it loads the index page as a browser would (the page, then its
# stylesheet and logo in parallel) from cold, with the summon groups the
# builder wrote and with them removed from the config, interleaved over a
# few rounds, and prints both page-load times and their difference.
#
# Environment: as demo.sh (JITSU_DEMO_SKIP_DEPS, JITSU_DEMO_SKIP_BUILD,
# JITSU_DEMO_DOMAIN_TYPE, JITSU_DEMO_LOCK_WAIT, KEEP_TMP), and
#   JITSU_DEMO_IDLE=20s   idle timeout of every page's unikernel
#   JITSU_DEMO_PAGELOAD_ROUNDS=3   rounds of the page-load comparison (0: skip it)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
# shellcheck source=scripts/demo/lib.sh
. scripts/demo/lib.sh

IDLE=${JITSU_DEMO_IDLE:-20s}
PAGELOAD_ROUNDS=${JITSU_DEMO_PAGELOAD_ROUNDS:-3}
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

# stop_all stops every page's unikernel and waits until no VM runs.
stop_all() {
  local label _
  while IFS=$'\t' read -r label _; do
    jd_in_host "$JITSU_BIN" stop --config "$CFG" --mode destroy "$label" >/dev/null 2>&1 || true
  done <"$OUT/urls.tsv"
  for _ in $(seq 300); do
    [ "$(jd_virsh list --name 2>/dev/null | grep -c . || true)" -eq 0 ] && return 0
    sleep 0.2
  done
  jd_die "VMs still running 60 s after stopping them all"
}

# pageload_cold VARIANT: loads the index from cold with config VARIANT
# (groups or nogroups) and prints crawl -page's output.
pageload_cold() {
  cp "$OUT/jitsu-$1.toml" "$CFG"
  jd_in_host "$JITSU_BIN" reload --config "$CFG" >/dev/null || return 1
  stop_all
  sleep 1 # a quiet host for the next load
  jd_in_client "$JD_TMP/crawl" -page -start "http://p-index.$ZONE/" -dns "$JD_HOST_ADDR:53" -zone "$ZONE" | tee "$JD_TMP/pageload.$1"
}

# pageload_summary prints the medians of with_ms and without_ms and the
# median of the paired differences per round.
pageload_summary() {
  local i diffs=()
  for i in "${!with_ms[@]}"; do
    diffs+=("$(awk -v a="${with_ms[$i]}" -v b="${without_ms[$i]}" 'BEGIN { printf "%.1f", a - b }')")
  done
  median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  jd_info "page load of http://p-index.$ZONE/ and its resources from cold, median of $PAGELOAD_ROUNDS rounds:"
  jd_info "  with summon groups:    $(median "${with_ms[@]}") ms   (${with_ms[*]})"
  jd_info "  without summon groups: $(median "${without_ms[@]}") ms   (${without_ms[*]})"
  jd_info "  difference (with - without), median of the paired rounds: $(median "${diffs[@]}") ms   (${diffs[*]})"
}

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

if [ "$PAGELOAD_ROUNDS" -gt 0 ]; then
  jd_section "8. Page load of the index from cold, with and without summon groups ($PAGELOAD_ROUNDS rounds, interleaved)"
  cp "$CFG" "$OUT/jitsu-groups.toml"
  grep -v '^with = ' "$CFG" >"$OUT/jitsu-nogroups.toml"
  jd_info "groups: $(grep -c '^with = ' "$CFG") pages with a with = [...] line; without: $OUT/jitsu-nogroups.toml has none"
  jd_info "each load: every VM stopped, config reloaded, then crawl -page: the index, then what it loads in parallel"
  declare -a with_ms=() without_ms=()
  for r in $(seq "$PAGELOAD_ROUNDS"); do
    order="groups nogroups"
    [ $((r % 2)) -eq 0 ] && order="nogroups groups"
    for v in $order; do
      pageload_cold "$v" >"$JD_TMP/pageload.out" || { cat "$JD_TMP/pageload.out"; jd_die "page load ($v, round $r) failed"; }
      t=$(sed -n 's/^ *page load: \([0-9.]*\) ms.*/\1/p' "$JD_TMP/pageload.out")
      [ -n "$t" ] || { cat "$JD_TMP/pageload.out"; jd_die "no page-load time in the output"; }
      jd_info "round $r, $(printf '%-8s' "$v") page load $t ms"
      if [ "$v" = groups ]; then with_ms+=("$t"); else without_ms+=("$t"); fi
    done
  done
  cp "$OUT/jitsu-groups.toml" "$CFG"
  jd_in_host "$JITSU_BIN" reload --config "$CFG" >/dev/null
  jd_info "the last load with groups (the stylesheet and logo were already booting when their queries came):"
  sed 's/^/  /' "$JD_TMP/pageload.groups"
  jd_info "the last load without groups (their boots start at their queries, after the index arrived):"
  sed 's/^/  /' "$JD_TMP/pageload.nogroups"
  pageload_summary
fi

jd_section "Done"
jd_info "jitsu's full log: $LOG, generated config: $CFG (kept with KEEP_TMP=1)"
