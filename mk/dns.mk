# DNS server (dnsserver/): dnsperf benchmark against knotd.
# `make bench-dns` runs dnsperf against jitsu's dnsserver (dnsserver/dnsbench,
# fake instant summoner) and against knotd on the same zone, one core each,
# and prints queries per second and the ratio. BENCH_DNS_SECONDS sets the
# duration of each of the four runs (default 10).

.PHONY: bench-dns
bench-dns: ## dnsperf q/s of dnsserver vs knotd (static and unikernel names) and their ratio
	sh dnsserver/dnsbench/bench.sh $(BENCH_DNS_SECONDS)

BENCH_TARGETS += bench-dns
