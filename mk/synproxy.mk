# mk/synproxy.mk: the SYN proxy (issue 5; see docs/synproxy.md). Its
# benchmarks (`make bench-synproxy`) are in mk/bench.mk.
#
#   make fuzz-synproxy    run the decoder fuzz target for FUZZTIME

FUZZTIME ?= 30s

TEST_ROOT_PKGS += ./synproxy/roottest

.PHONY: fuzz-synproxy

fuzz-synproxy: ## fuzz the SYN proxy's packet decoder for FUZZTIME
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./synproxy/
