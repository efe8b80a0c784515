package doctor

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/jitsu-unikernel/jitsu/internal/testenv"
)

func encodeACL(es ...aclEntry) []byte {
	b := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range es {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

func TestACLAllows(t *testing.T) {
	q := &qemuIdentity{name: "libvirt-qemu", uid: 500, gids: map[uint32]bool{600: true}}
	const owner, group = 0, 0
	base := []aclEntry{{aclUserObj, 6, 0}, {aclGroupOb, 0, 0}, {aclOther, 0, 0}}
	for _, tc := range []struct {
		name string
		acl  []aclEntry
		want bool
	}{
		{"no entry for qemu", base, false},
		{"named user", append(base, aclEntry{aclUser, 4, 500}, aclEntry{aclMask, 4, 0}), true},
		{"named user masked out", append(base, aclEntry{aclUser, 4, 500}, aclEntry{aclMask, 0, 0}), false},
		{"named group", append(base, aclEntry{aclGroup, 4, 600}, aclEntry{aclMask, 4, 0}), true},
		{"other", []aclEntry{{aclUserObj, 6, 0}, {aclGroupOb, 0, 0}, {aclOther, 4, 0}}, true},
		{"a matching group without r hides other", []aclEntry{{aclUserObj, 6, 0}, {aclGroup, 0, 600}, {aclMask, 7, 0}, {aclOther, 4, 0}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acl := parseACL(encodeACL(tc.acl...))
			if len(acl) != len(tc.acl) {
				t.Fatalf("parsed %d entries of %d", len(acl), len(tc.acl))
			}
			if got := aclAllows(acl, q, owner, group, 4); got != tc.want {
				t.Fatalf("allows = %v, want %v", got, tc.want)
			}
		})
	}
	if parseACL([]byte{1, 0, 0, 0}) != nil || parseACL([]byte{2, 0, 0, 0, 1}) != nil {
		t.Fatal("a malformed ACL parsed")
	}
}

// TestPathsGroupAndACL: an image QEMU's user reads through its group or an
// ACL entry passes; no world-readable file is needed.
func TestPathsGroupAndACL(t *testing.T) {
	testenv.RequireRoot(t) // chown to another group
	q := &qemuIdentity{name: "libvirt-qemu", group: "kvm", uid: 64055, gids: map[uint32]bool{64099: true}}
	base, err := os.MkdirTemp("", "jitsu-doctor-acl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(base)); err != nil || fi.Mode().Perm()&0o001 == 0 {
		t.Skipf("the temp directory %s is not o+x; set TMPDIR", filepath.Dir(base))
	}
	byGroup := filepath.Join(base, "by-group")
	if err := os.WriteFile(byGroup, []byte("kernel"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(byGroup, 0, 64099); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(byGroup, 0o640); err != nil {
		t.Fatal(err)
	}
	wantResult(t, checkPath(imagePath{"kernel", byGroup, []string{"www"}}, q), Pass, "also by libvirt-qemu", "")

	byACL := filepath.Join(base, "by-acl")
	if err := os.WriteFile(byACL, []byte("kernel"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantResult(t, checkPath(imagePath{"kernel", byACL, []string{"www"}}, q), Fail, "not readable", "setfacl -m u:libvirt-qemu:r")
	acl := encodeACL(aclEntry{aclUserObj, 6, 0}, aclEntry{aclUser, 4, 64055}, aclEntry{aclGroupOb, 0, 0}, aclEntry{aclMask, 4, 0}, aclEntry{aclOther, 0, 0})
	if err := syscall.Setxattr(byACL, aclXattr, acl, 0); err != nil {
		if errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) {
			t.Skipf("%s has no POSIX ACLs: %v", base, err)
		}
		t.Fatal(err)
	}
	wantResult(t, checkPath(imagePath{"kernel", byACL, []string{"www"}}, q), Pass, "also by libvirt-qemu", "")
}
