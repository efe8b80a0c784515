# mk/hypervisor.mk: the libvirt hypervisor backend (issue 3; see
# docs/hypervisor.md). Its root-tier tests start their own libvirtd inside a
# private network namespace (internal/sandbox), holding
# /run/jitsu-libvirtd.lock. The boot-floor benchmarks are in mk/bench.mk.

TEST_ROOT_PKGS += ./hypervisor/libvirt/integration ./internal/testenv ./internal/sandbox
