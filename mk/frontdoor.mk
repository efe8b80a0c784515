# mk/frontdoor.mk: the front door (frontdoor/, issue 12). Its benchmark,
# `make bench-frontdoor` (bench/frontdoor), is in mk/bench.mk.
