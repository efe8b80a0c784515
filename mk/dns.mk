# DNS server (dnsserver/): dnsperf benchmark against knotd.
# `make bench-dns` runs dnsperf against jitsu's dnsserver (dnsserver/dnsbench,
# fake instant summoner) and against knotd on the same zone, one core each,
# and prints queries per second and the ratio, with response-rate limiting
# and DNS cookies off, then on (knotd's mod-rrl and mod-cookies; queries
# without a cookie, then with a valid one). BENCH_DNS_SECONDS sets the
# duration of each of the twelve runs (default 10); BENCH_DNS_MODES="off"
# measures only the first.

.PHONY: bench-dns
bench-dns: ## dnsperf q/s of dnsserver vs knotd (static and unikernel names) and their ratio
	sh dnsserver/dnsbench/bench.sh $(BENCH_DNS_SECONDS)

BENCH_TARGETS += bench-dns
