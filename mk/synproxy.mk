# mk/synproxy.mk: the SYN proxy (issue 5; see docs/synproxy.md).
#
#   make bench-synproxy   as root: listen -> connect delay with and without
#                         the proxy (median, p99) inside namespaces it
#                         creates, and the memory of 10,000 held SYNs
#   make fuzz-synproxy    run the decoder fuzz target for FUZZTIME

FUZZTIME ?= 30s

BENCH_TARGETS  += bench-synproxy
TEST_ROOT_PKGS += ./synproxy/roottest

.PHONY: bench-synproxy fuzz-synproxy

bench-synproxy: ## as root: SYN proxy delay (with/without, median/p99) and memory of 10k held SYNs
	$(GO) test -count=1 -run '^$$' -bench 'HoldMemory' -benchtime 1x ./synproxy/
	$(GO) test -count=1 -p 1 -run '^$$' -bench . -benchtime 1x -timeout 10m ./synproxy/roottest/

fuzz-synproxy: ## fuzz the SYN proxy's packet decoder for FUZZTIME
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./synproxy/
