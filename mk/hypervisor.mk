# mk/hypervisor.mk: the libvirt hypervisor backend (issue 3; see
# docs/hypervisor.md). Included by the top-level Makefile.
#
#   make bench-bootfloor        boot floor of the example unikernel: start
#                               call -> first HTTP answer (median/min/p90/max)
#   make bench-bootfloor-floor  the same for the multiboot kernel that only
#                               prints JITSU-READY (libvirt + QEMU + firmware)
#
# Both need root and `make image`; they start their own libvirtd inside a
# private network namespace (internal/testenv), holding /run/jitsu-libvirtd.lock.

BOOTFLOOR_RUNS    ?= 10
BOOTFLOOR_FLAGS   ?=
BOOTFLOOR_MB      ?= /var/lib/jitsu/images/multiboot/hello.elf

.PHONY: bench-bootfloor bench-bootfloor-floor bin/bootfloor

BENCH_TARGETS  += bench-bootfloor
TEST_ROOT_PKGS += ./hypervisor/libvirt/integration ./internal/testenv

bin/bootfloor:
	$(GO) build -o bin/bootfloor ./tools/bootfloor

bench-bootfloor: bin/bootfloor ## boot floor: start call -> first HTTP answer of the example unikernel (QEMU TCG), then the multiboot floor
	bin/bootfloor -n $(BOOTFLOOR_RUNS) -domain-type $(DOMAIN_TYPE) $(BOOTFLOOR_FLAGS)
	@if [ -f $(BOOTFLOOR_MB) ]; then bin/bootfloor -n $(BOOTFLOOR_RUNS) -domain-type $(DOMAIN_TYPE) -floor $(BOOTFLOOR_MB); \
	  else echo "bench-bootfloor: $(BOOTFLOOR_MB) missing (make image), floor kernel skipped"; fi

bench-bootfloor-floor: bin/bootfloor ## libvirt + QEMU + firmware floor: start call -> JITSU-READY of the multiboot kernel
	bin/bootfloor -n $(BOOTFLOOR_RUNS) -domain-type $(DOMAIN_TYPE) -floor $(BOOTFLOOR_MB)
