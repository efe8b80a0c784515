#!/bin/sh
# dnsperf against jitsu's dnsserver (dnsbench) and against knotd on the same
# zone, one server core each (server on CPU 1, dnsperf on CPU 0), in one run;
# prints queries per second and the ratio jitsu/knotd, for static names and
# for names of running unikernels. Loopback only.
# Usage: bench/dns/bench.sh [seconds]   (run from the module root)
set -eu
SECS=${1:-${BENCH_DNS_SECONDS:-10}}
PERF_OPTS=${BENCH_DNS_PERF_OPTS:-"-c 4 -q 256"}
for b in knotd dnsperf taskset; do
	command -v $b >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
	command -v $b >/dev/null 2>&1 || { echo "bench-dns: $b not installed (apt-get install knot dnsperf util-linux)" >&2; exit 1; }
done
TMP=$(mktemp -d /tmp/jitsu-bench-dns.XXXXXX)
KPID= JPID=
cleanup() {
	[ -n "$KPID" ] && kill "$KPID" 2>/dev/null && wait "$KPID" 2>/dev/null
	[ -n "$JPID" ] && kill "$JPID" 2>/dev/null && wait "$JPID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap "exit 1" INT TERM HUP PIPE
go build -o "$TMP/dnsbench" ./bench/dns
"$TMP/dnsbench" -write "$TMP"
KPORT=${BENCH_DNS_KNOT_PORT:-53531} JPORT=${BENCH_DNS_JITSU_PORT:-53532}
# knotd runs with its default worker threads (BENCH_DNS_KNOT_WORKERS="    udp-workers: 1"
# measured the same when pinned to one core).
KNOT_WORKERS=${BENCH_DNS_KNOT_WORKERS-}
cat > "$TMP/knot.conf" <<CONF
server:
    rundir: "$TMP"
    listen: 127.0.0.1@$KPORT
    background-workers: 1
$KNOT_WORKERS
database:
    storage: "$TMP"
log:
  - target: stderr
    any: warning
zone:
  - domain: bench.test.
    file: "$TMP/bench.test.zone"
CONF
taskset -c 1 knotd -c "$TMP/knot.conf" & KPID=$!
taskset -c 1 "$TMP/dnsbench" -listen 127.0.0.1:$JPORT >/dev/null & JPID=$!
for p in $KPORT $JPORT; do
	kill -0 $KPID 2>/dev/null && kill -0 $JPID 2>/dev/null || { echo "bench-dns: a server failed to start" >&2; exit 1; }
	i=0
	until dig +short +time=1 +tries=1 @127.0.0.1 -p $p s0.bench.test A | grep -q .; do
		i=$((i+1)); [ $i -lt 50 ] || { echo "bench-dns: server on port $p not answering" >&2; exit 1; }
		sleep 0.2
	done
done
qps() { # port queryfile
	taskset -c 0 dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$SECS" $PERF_OPTS 2>&1 |
		awk '/Queries per second/ {print int($4)} /Queries lost/ {lost=$3} END {}'
}
printf '%-10s %12s %12s %8s\n' names knotd jitsu ratio
for set in static unikernel; do
	k=$(qps $KPORT "$TMP/$set.queries")
	j=$(qps $JPORT "$TMP/$set.queries")
	printf '%-10s %12s %12s %8s\n' "$set" "$k" "$j" "$(awk -v j="$j" -v k="$k" 'BEGIN {printf "%.2f", j/k}')"
done
echo "(dnsperf $PERF_OPTS -l $SECS; one core each: server on CPU 1, dnsperf on CPU 0; UDP, loopback)"
