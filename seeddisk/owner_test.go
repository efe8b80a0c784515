package seeddisk

import (
	"os"
	"syscall"
)

func fileOwner(st os.FileInfo) (int, int) {
	s := st.Sys().(*syscall.Stat_t)
	return int(s.Uid), int(s.Gid)
}
