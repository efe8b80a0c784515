# Operations area (control socket, status page, doctor).
# doctor's root-tier test boots a probe kernel through a private libvirtd
# (taken under /run/jitsu-libvirtd.lock), so the package runs with -p 1.
TEST_ROOT_PKGS += ./doctor
# guestcpu's root test places processes into real cgroups (the guests' CPU
# weight, hypervisor.guest_cpu_weight).
TEST_ROOT_PKGS += ./guestcpu/roottest
