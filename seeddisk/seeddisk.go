// Package seeddisk writes a unikernel's seed-file disk: the files of its
// `files` key packed into a read-only raw disk image in the ustar tar
// format, the layout MirageOS's kv_ro tar backend (ocaml-tar) reads and
// that a Linux guest reads from /dev/vda with any tar reader. Secrets
// handed to a guest this way stay off the kernel command line, which every
// local user can read.
//
// The image is written atomically (a running guest keeps the old one),
// mode 0600, owned by the user QEMU runs as.
package seeddisk

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// MaxBytes caps the size of the files of one seed disk: it is for keys,
// certificates and small configuration, not content.
const MaxBytes = 64 << 20

// QEMUUser is the user libvirt's QEMU runs as on Debian.
const QEMUUser = "libvirt-qemu"

// Path returns the image path of the unikernel called name in dir.
func Path(dir, name string) string { return filepath.Join(dir, name+".seed.tar") }

// Owner is the user and group an image is chowned to; -1 keeps the
// writer's.
type Owner struct{ UID, GID int }

// QEMUOwner returns the owner for QEMU's user (QEMUUser and its primary
// group) if that user exists, else Owner{-1, -1}: QEMU then runs as root
// or the image's reader is configured otherwise.
func QEMUOwner() Owner {
	u, err := user.Lookup(QEMUUser)
	if err != nil {
		return Owner{-1, -1}
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return Owner{-1, -1}
	}
	return Owner{uid, gid}
}

// Pack writes the tar image of files (names inside the image to host
// paths) to w, in name order: one ustar header and the contents of each
// file (mode 0400, owner 0, the host file's modification time), then the
// two zero blocks that end an archive. Only regular files are packed; the
// total is capped at MaxBytes.
func Pack(w io.Writer, files map[string]string) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	tw := tar.NewWriter(w)
	var total int64
	for _, name := range names {
		src := files[name]
		n, err := packFile(tw, name, src, MaxBytes-total)
		if err != nil {
			return fmt.Errorf("seed file %q from %s: %w", name, src, err)
		}
		total += n
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finish seed image: %w", err)
	}
	return nil
}

// ErrTooLarge means the files exceed MaxBytes.
var ErrTooLarge = errors.New("seed files exceed the seed disk's cap (64MiB)")

func packFile(tw *tar.Writer, name, src string, room int64) (int64, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("not a regular file (%s)", st.Mode().Type())
	}
	if st.Size() > room {
		return 0, ErrTooLarge
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     0o400,
		Size:     st.Size(),
		ModTime:  st.ModTime().Truncate(time.Second),
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return 0, err
	}
	n, err := io.CopyN(tw, f, st.Size())
	if err != nil {
		return n, fmt.Errorf("copy (it changed while packed?): %w", err)
	}
	return n, nil
}

// Write packs files into the image at path: written to a temporary file
// in the same directory (created 0755 if missing: QEMU must traverse it), mode 0600, chowned to
// owner, synced, then renamed over path.
func Write(path string, files map[string]string, owner Owner) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("seed image directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".seed-*")
	if err != nil {
		return fmt.Errorf("create seed image: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("chmod seed image: %w", err)
	}
	if owner.UID >= 0 || owner.GID >= 0 {
		if err := tmp.Chown(owner.UID, owner.GID); err != nil {
			return fmt.Errorf("chown seed image to %d:%d: %w", owner.UID, owner.GID, err)
		}
	}
	bw := bufio.NewWriterSize(tmp, 64<<10)
	if err := Pack(bw, files); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write seed image: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync seed image: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close seed image: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install seed image: %w", err)
	}
	return nil
}
