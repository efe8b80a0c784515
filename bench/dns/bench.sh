#!/bin/sh
# dnsperf against jitsu's dnsserver (dnsbench) and against knotd on the same
# zone, one server core each (server on CPU 1, dnsperf on CPU 0), in one run;
# prints queries per second and the ratio jitsu/knotd, for static names and
# for names of running unikernels. Loopback only.
#
# Each is measured twice: with response-rate limiting and DNS cookies off,
# and on (jitsu's RRL and cookies; knotd's mod-rrl and mod-cookies), the
# rate set far above the offered load so that every answer is accounted and
# none limited: the cost of the protection, not its effect. "on" is measured
# with queries without a cookie (the RRL path), and with a valid server
# cookie learned from each server beforehand (the cookie path, which exempts
# the client from RRL in both servers).
# Usage: bench/dns/bench.sh [seconds]   (run from the module root)
# BENCH_DNS_MODES="off on" limits the modes measured.
set -eu
SECS=${1:-${BENCH_DNS_SECONDS:-10}}
PERF_OPTS=${BENCH_DNS_PERF_OPTS:-"-c 4 -q 256"}
for b in knotd dnsperf taskset; do
	command -v $b >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
	command -v $b >/dev/null 2>&1 || { echo "bench-dns: $b not installed (apt-get install knot dnsperf util-linux)" >&2; exit 1; }
done
TMP=$(mktemp -d /tmp/jitsu-bench-dns.XXXXXX)
KPID= JPID=
stop_servers() {
	if [ -n "$KPID" ]; then kill "$KPID" 2>/dev/null || true; wait "$KPID" 2>/dev/null || true; fi
	if [ -n "$JPID" ]; then kill "$JPID" 2>/dev/null || true; wait "$JPID" 2>/dev/null || true; fi
	KPID= JPID=
}
cleanup() {
	stop_servers
	rm -rf "$TMP"
}
trap cleanup EXIT
trap "exit 1" INT TERM HUP PIPE
go build -o "$TMP/dnsbench" ./bench/dns
"$TMP/dnsbench" -write "$TMP"
KPORT=${BENCH_DNS_KNOT_PORT:-53531} JPORT=${BENCH_DNS_JITSU_PORT:-53532}
MODES=${BENCH_DNS_MODES:-"off on"}
RRL_RATE=100000000 # answers/s per account: far above what dnsperf offers
CC=0a1b2c3d4e5f6071 # the client cookie dnsperf sends
# knotd runs with its default worker threads (BENCH_DNS_KNOT_WORKERS="    udp-workers: 1"
# measured the same when pinned to one core).
KNOT_WORKERS=${BENCH_DNS_KNOT_WORKERS-}
knot_conf() { # mode
	cat <<CONF
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
CONF
	if [ "$1" = on ]; then
		cat <<CONF
mod-rrl:
  - id: bench
    rate-limit: $RRL_RATE
    slip: 2
mod-cookies:
  - id: bench
template:
  - id: default
    global-module: [mod-cookies/bench, mod-rrl/bench]
CONF
	fi
	cat <<CONF
zone:
  - domain: bench.test.
    file: "$TMP/bench.test.zone"
CONF
}
start_servers() { # mode
	knot_conf "$1" > "$TMP/knot.conf"
	flags=
	[ "$1" = on ] && flags="-rrl-rate $RRL_RATE -cookies"
	taskset -c 1 knotd -c "$TMP/knot.conf" & KPID=$!
	# shellcheck disable=SC2086
	taskset -c 1 "$TMP/dnsbench" -listen 127.0.0.1:$JPORT $flags >/dev/null & JPID=$!
	for p in $KPORT $JPORT; do
		kill -0 $KPID 2>/dev/null && kill -0 $JPID 2>/dev/null || { echo "bench-dns: a server failed to start" >&2; exit 1; }
		i=0
		until dig +short +time=1 +tries=1 @127.0.0.1 -p $p s0.bench.test A | grep -q .; do
			i=$((i+1)); [ $i -lt 50 ] || { echo "bench-dns: server on port $p not answering" >&2; exit 1; }
			sleep 0.2
		done
	done
}
cookie() { # port: the full cookie (client | server) the server hands out to CC
	dig +time=1 +tries=1 +cookie=$CC @127.0.0.1 -p "$1" s0.bench.test A |
		awk '/; COOKIE:/ {print $3; exit}'
}
qps() { # port queryfile [dnsperf options]
	port=$1 file=$2
	shift 2
	# shellcheck disable=SC2086
	taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$file" -l "$SECS" $PERF_OPTS "$@" 2>&1 |
		awk '/Queries per second/ {print int($4)}'
}
ratio() { awk -v j="$1" -v k="$2" 'BEGIN {if (k > 0) printf "%.2f", j/k; else print "-"}'; }
printf '%-10s %-14s %12s %12s %8s\n' names "RRL+cookies" knotd jitsu ratio
for mode in $MODES; do
	start_servers "$mode"
	variants=none
	if [ "$mode" = on ]; then
		variants="none valid"
		KC=$(cookie $KPORT) JC=$(cookie $JPORT)
		[ ${#KC} -eq 48 ] && [ ${#JC} -eq 48 ] || { echo "bench-dns: no server cookie learned (knotd: '$KC', jitsu: '$JC')" >&2; exit 1; }
	fi
	for v in $variants; do
		for set in static unikernel; do
			if [ "$v" = valid ]; then
				k=$(qps $KPORT "$TMP/$set.queries" -E "10:$KC")
				j=$(qps $JPORT "$TMP/$set.queries" -E "10:$JC")
				label="on, cookie"
			else
				k=$(qps $KPORT "$TMP/$set.queries")
				j=$(qps $JPORT "$TMP/$set.queries")
				label=$mode
			fi
			printf '%-10s %-14s %12s %12s %8s\n' "$set" "$label" "$k" "$j" "$(ratio "$j" "$k")"
		done
	done
	stop_servers
done
echo "(dnsperf $PERF_OPTS -l $SECS; one core each: server on CPU 1, dnsperf on CPU 0; UDP, loopback;"
echo " on: RRL at $RRL_RATE answers/s, nothing limited; cookie: a valid server cookie on every query)"
