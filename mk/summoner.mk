# mk/summoner.mk: the summoner (issue 4; see docs/summoner.md). Its
# benchmarks (`make bench-summoner`) are in mk/bench.mk.
