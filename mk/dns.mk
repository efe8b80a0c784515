# DNS server (dnsserver/). Its benchmark, `make bench-dns`, is in mk/bench.mk.
