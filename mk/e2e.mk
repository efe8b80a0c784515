# mk/e2e.mk: the end-to-end tests (test/) and the cold-start benchmark
# (tools/coldstart). Both need root, `make image`, and take the libvirtd lock.

TEST_ROOT_PKGS += ./test
BENCH_TARGETS  += bench-coldstart

COLDSTART_RUNS ?= 10

.PHONY: bench-coldstart
bench-coldstart: build ## cold start: DNS query to first HTTP byte, with/without the SYN proxy, vs the boot floor
	$(GO) run ./tools/coldstart -n $(COLDSTART_RUNS) -jitsu bin/jitsu -domain-type $(DOMAIN_TYPE)
