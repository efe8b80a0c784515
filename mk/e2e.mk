# mk/e2e.mk: the end-to-end tests (test/). They need root, `make image`, and
# take the libvirtd lock. The cold-start benchmark is in mk/bench.mk.

TEST_ROOT_PKGS += ./test
