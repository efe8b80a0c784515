package doctor

import (
	"encoding/binary"
	"io/fs"
	"syscall"
)

// POSIX ACL entry tags and the xattr holding a file's access ACL (Linux's
// binary format: a 4-byte version 2, then 8-byte entries tag, perm, id).
const (
	aclXattr   = "system.posix_acl_access"
	aclVersion = 2
	aclUserObj = 0x01
	aclUser    = 0x02
	aclGroupOb = 0x04
	aclGroup   = 0x08
	aclMask    = 0x10
	aclOther   = 0x20
)

// aclEntry is one entry of a POSIX ACL.
type aclEntry struct {
	tag, perm uint16
	id        uint32
}

// readACL returns path's access ACL; nil when it has none (or the file
// system has no ACLs).
func readACL(path string) []aclEntry {
	buf := make([]byte, 512)
	n, err := syscall.Getxattr(path, aclXattr, buf)
	if err != nil {
		return nil
	}
	return parseACL(buf[:n])
}

// parseACL decodes the xattr form of an ACL; nil if it is malformed.
func parseACL(b []byte) []aclEntry {
	if len(b) < 4 || (len(b)-4)%8 != 0 || binary.LittleEndian.Uint32(b) != aclVersion {
		return nil
	}
	var out []aclEntry
	for b = b[4:]; len(b) >= 8; b = b[8:] {
		out = append(out, aclEntry{binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]), binary.LittleEndian.Uint32(b[4:])})
	}
	return out
}

// aclAllows evaluates an ACL as the kernel does (acl(5)) for id, the owner
// uid and group gid of the file: the owner's entry, else a named user's,
// else the union of the matching group entries (masked), else other.
func aclAllows(acl []aclEntry, id *qemuIdentity, uid, gid uint32, perm fs.FileMode) bool {
	mask := uint16(7)
	for _, e := range acl {
		if e.tag == aclMask {
			mask = e.perm
		}
	}
	p := uint16(perm)
	if id.uid == uid {
		for _, e := range acl {
			if e.tag == aclUserObj {
				return e.perm&p != 0
			}
		}
	}
	for _, e := range acl {
		if e.tag == aclUser && e.id == id.uid {
			return e.perm&mask&p != 0
		}
	}
	inGroup := false
	for _, e := range acl {
		if (e.tag == aclGroupOb && id.gids[gid]) || (e.tag == aclGroup && id.gids[e.id]) {
			inGroup = true
			if e.perm&mask&p != 0 {
				return true
			}
		}
	}
	if inGroup {
		return false
	}
	for _, e := range acl {
		if e.tag == aclOther {
			return e.perm&p != 0
		}
	}
	return false
}
