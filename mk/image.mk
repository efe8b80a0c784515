# mk/image.mk: the example unikernel image and the multiboot test image
# (issues 3 and 8; see docs/boot.md). Included by the top-level Makefile.
#
#   make image        build (kernel cached) and install:
#                       $(IMAGE_DIR)/example/{bzImage,vmlinux,initrd.cpio.gz,initrd.cpio,cmdline}
#                       $(IMAGE_DIR)/multiboot/hello.elf
#   make image-clean  remove the installed images and intermediates (the
#                     kernel cache in $(KERNEL_CACHE) is kept; delete it by
#                     hand to force a cold kernel build)
#
# Paths under /var/lib/jitsu/images are a team contract: libvirt's QEMU
# (user libvirt-qemu) reads them, so files are 0644 and directories 0755.

IMAGE_DIR    ?= /var/lib/jitsu/images
KERNEL_CACHE ?= /var/cache/jitsu/kernel
IMAGE_BUILD  ?= /var/cache/jitsu/image-build
IMAGE_SITE   ?= examples/unikernel/site

IMAGE_EXAMPLE   := $(IMAGE_DIR)/example
IMAGE_MULTIBOOT := $(IMAGE_DIR)/multiboot

.PHONY: image image-kernel image-initrd image-multiboot image-clean

image: image-kernel image-initrd image-multiboot ## build the example unikernel (kernel cached) and the multiboot image into $(IMAGE_DIR)
	@echo "image: installed in $(IMAGE_EXAMPLE) and $(IMAGE_MULTIBOOT)"
	@ls -l $(IMAGE_EXAMPLE) $(IMAGE_MULTIBOOT)

# Directories on the way to the images must be traversable by libvirt-qemu.
image-dirs: ## create the image directories (traversable by libvirt-qemu)
	install -d -m 0755 $(dir $(IMAGE_DIR)) $(IMAGE_DIR) $(IMAGE_EXAMPLE) $(IMAGE_MULTIBOOT) $(IMAGE_BUILD)
.PHONY: image-dirs

# The kernel build is cached by build-kernel.sh (seconds when cached, a few
# minutes cold); its last output line is the cache directory.
image-kernel: image-dirs ## build (or take from the cache) the example kernel and install it
	@set -e; out=$$(JITSU_KERNEL_CACHE=$(KERNEL_CACHE) examples/unikernel/build-kernel.sh | tail -n1); \
	install -m 0644 $$out/bzImage $(IMAGE_EXAMPLE)/bzImage; \
	install -m 0644 $$out/vmlinux $(IMAGE_EXAMPLE)/vmlinux; \
	echo "image-kernel: $$out -> $(IMAGE_EXAMPLE)/{bzImage,vmlinux}"

# /init is static (CGO_ENABLED=0) and stripped; the initramfs is written by
# Go (no cpio(1)). initrd.cpio.gz is the gzip form (team contract path),
# initrd.cpio the uncompressed form, which boots faster (docs/boot.md).
image-initrd: image-dirs ## build /init and the example initramfs (gzip and uncompressed)
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o $(IMAGE_BUILD)/init ./examples/unikernel/init
	go run ./examples/unikernel/mkinitramfs -gzip -init $(IMAGE_BUILD)/init -content $(IMAGE_SITE) -o $(IMAGE_EXAMPLE)/initrd.cpio.gz
	go run ./examples/unikernel/mkinitramfs -init $(IMAGE_BUILD)/init -content $(IMAGE_SITE) -o $(IMAGE_EXAMPLE)/initrd.cpio
	install -m 0644 examples/unikernel/cmdline $(IMAGE_EXAMPLE)/cmdline

# A 32-bit multiboot ELF "built elsewhere" (binutils only, no multilib).
image-multiboot: image-dirs ## build the multiboot floor kernel (prints JITSU-READY)
	as --32 -o $(IMAGE_BUILD)/hello.o examples/multiboot/hello.S
	ld -m elf_i386 -T examples/multiboot/hello.ld -o $(IMAGE_BUILD)/hello.elf $(IMAGE_BUILD)/hello.o
	install -m 0644 $(IMAGE_BUILD)/hello.elf $(IMAGE_MULTIBOOT)/hello.elf

image-clean: ## remove the installed images (the kernel cache is kept)
	rm -rf $(IMAGE_EXAMPLE) $(IMAGE_MULTIBOOT) $(IMAGE_BUILD)
