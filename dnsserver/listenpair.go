package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// pairAttempts bounds the retries of listenPair for port 0.
const pairAttempts = 20

// listenPair binds UDP and TCP on addr, the same port for both. For port 0
// the kernel picks the UDP port; if TCP cannot have it (another socket,
// such as a client connection in TIME-WAIT, holds it), another is tried.
func listenPair(ctx context.Context, lc *net.ListenConfig, addr string) (*net.UDPConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	for attempt := 1; ; attempt++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp %s: %w", addr, err)
		}
		uc := pc.(*net.UDPConn)
		taddr := addr
		if port == "0" {
			taddr = net.JoinHostPort(host, fmt.Sprint(uc.LocalAddr().(*net.UDPAddr).Port))
		}
		ln, err := lc.Listen(ctx, "tcp", taddr)
		if err == nil {
			return uc, ln, nil
		}
		_ = uc.Close()
		if port != "0" || !errors.Is(err, syscall.EADDRINUSE) || attempt >= pairAttempts {
			return nil, nil, fmt.Errorf("listen tcp %s: %w", taddr, err)
		}
	}
}
