package roottest

import "golang.org/x/sys/unix"

// setBroadcast allows a datagram socket to send to broadcast addresses.
func setBroadcast(fd int) { _ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1) }
