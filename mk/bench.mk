# mk/bench.mk: every benchmark, in one place (docs/benchmarks.md has the
# table). `make bench` runs BENCH_TARGETS one after the other. The programs
# live under bench/; the Go benchmarks that need a package's internals stay
# beside that package (summoner/, synproxy/) and are run from here.
#
# The boot benchmarks need root and `make image`; they start a private
# libvirtd in a network namespace (internal/sandbox) under
# /run/jitsu-libvirtd.lock. DOMAIN_TYPE (Makefile) sets their libvirt
# domain type.

BENCH_TARGETS += bench-dns bench-dns-guard bench-summoner bench-synproxy bench-bootfloor bench-coldstart bench-frontdoor bench-dnsload

COLDSTART_RUNS  ?= 10
# Images bench-coldstart runs its cases for, one table each (bench/coldstart -image).
COLDSTART_IMAGES ?= example multiboot
FRONTDOOR_ROUNDS ?= 3
BOOTFLOOR_RUNS  ?= 10
BOOTFLOOR_MB    ?= /var/lib/jitsu/images/multiboot/hello.elf
BENCH_DNS_SECONDS ?= 10
# Flags of bench/dnsload, e.g. DNSLOAD_ARGS='-guests 24 -rounds 8'
DNSLOAD_ARGS ?= -guests 12 -rounds 6
# Flags of bench/bootbench, e.g.
#   make bench-bootbench BOOTBENCH_ARGS='-runs 10 -kernel /var/lib/jitsu/images/example/bzImage'
BOOTBENCH_ARGS  ?= -runs 10
FRONTDOOR_ROUNDS ?= 3

.PHONY: bench-dnsload bench-density bench-frontdoor bench-dns bench-dns-guard bench-summoner bench-synproxy bench-bootfloor bench-bootfloor-floor bench-bootbench bench-coldstart

# bench-dns runs dnsperf against jitsu's dnsserver (bench/dns, fake instant
# summoner) and against knotd on the same zone, one core each, and prints
# queries per second and the ratio, with response-rate limiting and DNS
# cookies off, then on (knotd's mod-rrl and mod-cookies; queries without a
# cookie, then with a valid one). BENCH_DNS_SECONDS sets the duration of each
# of the twelve runs; BENCH_DNS_MODES="off" measures only the first.
bench-dns: ## dnsperf q/s of dnsserver vs knotd (static and unikernel names; RRL and cookies off, then on) and their ratio
	sh bench/dns/bench.sh $(BENCH_DNS_SECONDS)

bench-dns-guard: ## DNS response guard: cost of RRL accounting and the cookie check per answer
	$(GO) test -run '^$$' -bench 'Guard' -benchtime 1s -count 1 ./dnsserver/

bench-summoner: ## summoner benchmarks: Summon of a running unikernel, 10,000 configured unikernels
	$(GO) test -run '^$$' -bench 'SummonRunning|Startup10000' -benchtime 2s -count 1 ./summoner/

bench-synproxy: ## as root: SYN proxy delay (with/without, median/p99) and memory of 10k held SYNs
	$(GO) test -count=1 -run '^$$' -bench 'HoldMemory' -benchtime 1x ./synproxy/
	$(GO) test -count=1 -p 1 -run '^$$' -bench . -benchtime 1x -timeout 10m ./synproxy/roottest/

bench-bootfloor: ## as root: boot floor, start call -> first HTTP byte of the cold start's domain (BOOTFLOOR_RUNS), then the multiboot floor
	$(GO) run ./bench/bootfloor -n $(BOOTFLOOR_RUNS) -domain-type $(DOMAIN_TYPE)
	@if [ -f $(BOOTFLOOR_MB) ]; then $(GO) run ./bench/bootfloor -n $(BOOTFLOOR_RUNS) -domain-type $(DOMAIN_TYPE) -floor $(BOOTFLOOR_MB); \
	  else echo "bench-bootfloor: $(BOOTFLOOR_MB) missing (make image), floor kernel skipped"; fi

bench-bootfloor-floor: ## as root: libvirt + QEMU + firmware floor, start call -> JITSU-READY of the multiboot kernel
	$(GO) run ./bench/bootfloor -n $(BOOTFLOOR_RUNS) -domain-type $(DOMAIN_TYPE) -floor $(BOOTFLOOR_MB)

bench-bootbench: bin/jitsu-sandbox ## as root: boot phases of the example image with bench/bootbench's own domain XML (BOOTBENCH_ARGS)
	$(GO) build -o bin/bootbench ./bench/bootbench
	bin/jitsu-sandbox run -in -- bin/bootbench -lean -acpi=false \
	  -kernel /var/lib/jitsu/images/example/vmlinux -initrd /var/lib/jitsu/images/example/initrd.cpio \
	  -append "$$(cat /var/lib/jitsu/images/example/cmdline) jitsu.debug=1" $(BOOTBENCH_ARGS)

bench-coldstart: build ## as root: cold start, DNS query -> first byte (HTTP; JITSU-READY for multiboot), cases interleaved per round vs the boot floor (COLDSTART_RUNS rounds, each of COLDSTART_IMAGES)
	@for img in $(COLDSTART_IMAGES); do \
	  echo "== bench-coldstart -image $$img"; \
	  $(GO) run ./bench/coldstart -n $(COLDSTART_RUNS) -jitsu bin/jitsu -domain-type $(DOMAIN_TYPE) -image $$img || exit 1; \
	done

bench-frontdoor: build ## as root, with haproxy: front door vs direct vs HAProxy SNI from a client netns: 100 MB download, new-connection GETs/s, added latency (FRONTDOOR_ROUNDS)
	$(GO) run ./bench/frontdoor -rounds $(FRONTDOOR_ROUNDS) -jitsu bin/jitsu -domain-type $(DOMAIN_TYPE)

bench-dnsload: build ## as root: jitsu's DNS p50/p99 for a static name while spinning guests burn the CPU, guests flat vs weighted (guest_cpu_weight), interleaved
	$(GO) run ./bench/dnsload -jitsu bin/jitsu $(DNSLOAD_ARGS)

# Flags of bench/density, e.g. DENSITY_ARGS='-steps 10,20 -quiet 10s'.
DENSITY_ARGS ?=

bench-density: build ## as root: density, M=200 unikernels, brought up in steps (10, 20, 40, ...) until DNS p99 >= 5 ms or a guest fails; CPU and RSS per idle guest, DNS p50/p99, time to bring them up (DENSITY_ARGS)
	$(GO) run ./bench/density -jitsu bin/jitsu -domain-type $(DOMAIN_TYPE) $(DENSITY_ARGS)
