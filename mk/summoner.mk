# mk/summoner.mk: summoner benchmarks (issue 4; see docs/summoner.md).
#
#   make bench-summoner   Summon cost for a running unikernel (ns/op,
#                         allocs/op) and start-up time and heap of a
#                         summoner configured with 10,000 unikernels

.PHONY: bench-summoner

BENCH_TARGETS += bench-summoner

bench-summoner: ## summoner benchmarks: Summon of a running unikernel, 10,000 configured unikernels
	$(GO) test -run '^$$' -bench 'SummonRunning|Startup10000' -benchtime 2s -count 1 ./summoner/
