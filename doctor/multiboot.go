package doctor

import (
	"encoding/binary"
)

// ProbeMarker is the line the probe kernel prints on the serial console.
const ProbeMarker = "JITSU-READY"

// loadAddr is where the probe kernel is loaded (1 MiB, as multiboot wants).
const loadAddr = 0x100000

// ProbeELF returns a minimal multiboot (version 1) kernel as a 32-bit ELF:
// it writes ProbeMarker and a newline to the first serial port (0x3f8) and
// halts. QEMU boots it directly with -kernel (libvirt's <kernel>), so the
// probe needs no image built beforehand.
func ProbeELF() []byte {
	const (
		ehSize  = 52
		phSize  = 32
		mbOff   = ehSize + phSize // 84, 4-byte aligned, within the first 8 KiB
		codeOff = mbOff + 12
	)
	code := []byte{
		0xBE, 0, 0, 0, 0, // mov esi, msg
		0x66, 0xBA, 0xF8, 0x03, // mov dx, 0x3f8
		0xAC,       // loop: lodsb
		0x84, 0xC0, // test al, al
		0x74, 0x03, // jz done
		0xEE,       // out dx, al
		0xEB, 0xF8, // jmp loop
		0xFA,       // done: cli
		0xF4,       // hlt
		0xEB, 0xFD, // jmp hlt
	}
	msgOff := codeOff + len(code)
	binary.LittleEndian.PutUint32(code[1:], uint32(loadAddr+msgOff))
	msg := append([]byte(ProbeMarker+"\r\n"), 0)
	size := msgOff + len(msg)

	b := make([]byte, 0, size)
	le := binary.LittleEndian
	// ELF header.
	b = append(b, 0x7F, 'E', 'L', 'F', 1 /* 32-bit */, 1 /* LE */, 1 /* version */, 0 /* SYSV */)
	b = append(b, make([]byte, 8)...)
	b = le.AppendUint16(b, 2)                        // e_type: EXEC
	b = le.AppendUint16(b, 3)                        // e_machine: 386
	b = le.AppendUint32(b, 1)                        // e_version
	b = le.AppendUint32(b, uint32(loadAddr+codeOff)) // e_entry
	b = le.AppendUint32(b, ehSize)                   // e_phoff
	b = le.AppendUint32(b, 0)                        // e_shoff
	b = le.AppendUint32(b, 0)                        // e_flags
	b = le.AppendUint16(b, ehSize)                   // e_ehsize
	b = le.AppendUint16(b, phSize)                   // e_phentsize
	b = le.AppendUint16(b, 1)                        // e_phnum
	b = le.AppendUint16(b, 40)                       // e_shentsize
	b = le.AppendUint16(b, 0)                        // e_shnum
	b = le.AppendUint16(b, 0)                        // e_shstrndx
	// Program header: one loadable segment, the whole file at loadAddr.
	b = le.AppendUint32(b, 1) // PT_LOAD
	b = le.AppendUint32(b, 0) // p_offset
	b = le.AppendUint32(b, loadAddr)
	b = le.AppendUint32(b, loadAddr)
	b = le.AppendUint32(b, uint32(size)) // p_filesz
	b = le.AppendUint32(b, uint32(size)) // p_memsz
	b = le.AppendUint32(b, 5)            // PF_R|PF_X
	b = le.AppendUint32(b, 0x1000)
	// Multiboot header: magic, flags 0 (ELF load), checksum.
	var magic uint32 = 0x1BADB002
	b = le.AppendUint32(b, magic)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, -uint32(magic)) // magic + flags + checksum = 0 (mod 2^32)
	b = append(b, code...)
	b = append(b, msg...)
	return b
}
