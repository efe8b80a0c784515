# mk/frontdoor.mk: the front door (frontdoor/, issue 12): its benchmark.
# Needs root, `make image`, haproxy (scripts/install-deps.sh); takes the
# libvirtd lock.

BENCH_TARGETS += bench-frontdoor

FRONTDOOR_ROUNDS ?= 3

.PHONY: bench-frontdoor
bench-frontdoor: build ## front door vs direct vs HAProxy (SNI): 100 MB download, new-connection GETs/s, added latency
	$(GO) run ./tools/fdbench -rounds $(FRONTDOOR_ROUNDS) -jitsu bin/jitsu -domain-type $(DOMAIN_TYPE)
