/*
 * hello.S: the smallest "unikernel built elsewhere". A 32-bit multiboot
 * (v1) ELF, booted the way Solo5/MirageOS .virtio images are booted
 * (QEMU -kernel / libvirt <kernel> direct boot, which loads multiboot
 * images itself). It writes "JITSU-READY" to COM1 (I/O port 0x3f8) and
 * halts. Used by the hypervisor tests (bring-your-own image) and as the
 * floor of what QEMU + firmware cost, with no guest OS at all.
 */
	.set MB_MAGIC, 0x1BADB002
	.set MB_FLAGS, 0
	.set COM1, 0x3f8

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.text
	.code32
	.globl _start
_start:
	cli
	mov $msg, %esi
	mov $COM1, %dx
1:	lodsb
	test %al, %al
	jz 2f
	outb %al, %dx
	jmp 1b
2:	hlt
	jmp 2b

	.section .rodata
msg:	.asciz "JITSU-READY\r\n"
