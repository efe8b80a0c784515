# Operations area (control socket, status page, doctor).
# doctor's root-tier test boots a probe kernel through a private libvirtd
# (taken under /run/jitsu-libvirtd.lock), so the package runs with -p 1.
TEST_ROOT_PKGS += ./doctor
