# jitsu — top-level Makefile. Area fragments live in mk/*.mk; each may add
# targets (with a `## help` comment, listed by `make help`), append to
# BENCH_TARGETS (run by `make bench`; every benchmark is in mk/bench.mk) and to
# TEST_ROOT_PKGS (test packages that need root, a libvirtd or namespaces;
# they run one package at a time, since only one libvirtd may run per machine).

GO       ?= go
GOFLAGS  ?= -buildvcs=false
export GOFLAGS
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

BENCH_TARGETS  :=
TEST_ROOT_PKGS :=
# libvirt domain type of the boot benchmarks: qemu (TCG) here, kvm on a
# host with working KVM (make bench DOMAIN_TYPE=kvm).
DOMAIN_TYPE    ?= qemu

.PHONY: all build deps test test-unit test-root lint bench clean help bin/jitsu-sandbox
all: build ## build bin/jitsu and bin/jitsu-sandbox (the default)

-include mk/*.mk

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_./-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

build: bin/jitsu-sandbox ## build bin/jitsu and bin/jitsu-sandbox
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/jitsu ./cmd/jitsu

# The one sandbox (internal/sandbox) for scripts: a private libvirtd in a
# network namespace under /run/jitsu-libvirtd.lock (demos, bench-bootbench).
bin/jitsu-sandbox: ## build bin/jitsu-sandbox (run a command inside a private libvirtd's namespace; clean leftovers)
	$(GO) build -o bin/jitsu-sandbox ./tools/sandbox

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

ROOT_PKGS_ABS = $(addprefix github.com/jitsu-unikernel/jitsu/,$(patsubst ./%,%,$(TEST_ROOT_PKGS)))

# As root (CI, or a fresh machine), `make test` first installs what is
# missing (apt) and builds the example unikernel (kernel cached), so that
# one command passes the tests; as another user it runs what it can and the
# root tier skips, saying why.
IS_ROOT := $(filter 0,$(shell id -u))

deps: ## install every package the build, tests, benchmarks and demos need (apt; root)
	./scripts/install-deps.sh

test: $(if $(IS_ROOT),deps image) lint test-unit test-root ## every test tier: unit, libvirt test driver, root (namespaces, real libvirtd and VMs)

test-unit: ## unit tiers (no root needed), race detector on
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v -x -F -e NONE $(foreach p,$(ROOT_PKGS_ABS),-e $(p)))

test-root: ## root tier, one package at a time
	@if [ -n "$(strip $(TEST_ROOT_PKGS))" ]; then \
	  echo "$(GO) test -race -count=1 -p 1 -timeout 30m $(TEST_ROOT_PKGS)"; \
	  $(GO) test -race -count=1 -p 1 -timeout 30m $(TEST_ROOT_PKGS); \
	else echo "no root-tier packages"; fi

bench: build ## run every benchmark and print its figures
	@set -e; for t in $(BENCH_TARGETS); do echo "== $$t"; $(MAKE) --no-print-directory $$t; done

clean: ## remove build outputs
	rm -rf bin
