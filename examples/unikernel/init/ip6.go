package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// IP6Config is the guest's IPv6 configuration from jitsu.ip6=ADDR/PREFIX
// and jitsu.gw6=ADDR (the kernel's ip= parameter is IPv4 only).
type IP6Config struct {
	Addr    netip.Prefix // zero when absent
	Gateway netip.Addr   // zero when absent
}

// parseIP6 parses the value of jitsu.ip6=: an IPv6 address with a prefix
// length (a bare address means /64).
func parseIP6(v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		a, aerr := netip.ParseAddr(v)
		if aerr != nil {
			return netip.Prefix{}, fmt.Errorf("bad IPv6 address: %w", err)
		}
		p = netip.PrefixFrom(a, 64)
	}
	if !p.Addr().Is6() || p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%s is not an IPv6 address", p.Addr())
	}
	return p, nil
}

// parseGW6 parses the value of jitsu.gw6=.
func parseGW6(v string) (netip.Addr, error) {
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bad IPv6 gateway: %w", err)
	}
	if !a.Is6() || a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("gateway %s is not an IPv6 address", a)
	}
	return a, nil
}

// configureIP6 adds the address (without duplicate address detection, so
// that it is usable at once) and the default route to the interface dev.
func configureIP6(dev string, c IP6Config) error {
	if !c.Addr.IsValid() {
		return nil
	}
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return fmt.Errorf("configure IPv6: %w", err)
	}
	msgs := [][]byte{addrMsg(ifi.Index, c.Addr, 1)}
	if c.Gateway.IsValid() {
		msgs = append(msgs, routeMsg(ifi.Index, c.Gateway, 2))
	}
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("configure IPv6: netlink socket: %w", err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return fmt.Errorf("configure IPv6: bind netlink: %w", err)
	}
	for _, m := range msgs {
		if err := netlinkDo(fd, m); err != nil {
			return fmt.Errorf("configure IPv6 %s via %s on %s: %w", c.Addr, c.Gateway, dev, err)
		}
	}
	return nil
}

// netlinkDo sends one request and reads its acknowledgement.
func netlinkDo(fd int, req []byte) error {
	if err := syscall.Sendto(fd, req, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := syscall.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Header.Type == syscall.NLMSG_ERROR && len(m.Data) >= 4 {
			if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
				return syscall.Errno(-errno)
			}
		}
	}
	return nil
}

// nlmsg returns a netlink request of type typ with body and attributes.
func nlmsg(typ uint16, seq uint32, body []byte, attrs ...[]byte) []byte {
	b := make([]byte, syscall.NLMSG_HDRLEN, 64)
	b = append(b, body...)
	for _, a := range attrs {
		b = append(b, a...)
	}
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_ACK|syscall.NLM_F_CREATE|syscall.NLM_F_EXCL)
	binary.NativeEndian.PutUint32(b[8:], seq)
	return b
}

// rtattr encodes one attribute (16-byte IPv6 addresses and 4-byte
// integers need no padding).
func rtattr(typ uint16, data []byte) []byte {
	b := make([]byte, 4, 4+len(data))
	binary.NativeEndian.PutUint16(b[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	return append(b, data...)
}

// addrMsg is RTM_NEWADDR for p on interface index.
func addrMsg(index int, p netip.Prefix, seq uint32) []byte {
	const ifaFNoDAD = 0x02
	body := make([]byte, syscall.SizeofIfAddrmsg)
	body[0] = syscall.AF_INET6
	body[1] = byte(p.Bits())
	body[2] = ifaFNoDAD
	body[3] = syscall.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(body[4:], uint32(index))
	a := p.Addr().As16()
	return nlmsg(syscall.RTM_NEWADDR, seq, body, rtattr(syscall.IFA_LOCAL, a[:]), rtattr(syscall.IFA_ADDRESS, a[:]))
}

// routeMsg is RTM_NEWROUTE for the default route via gw on index.
func routeMsg(index int, gw netip.Addr, seq uint32) []byte {
	body := make([]byte, syscall.SizeofRtMsg)
	body[0] = syscall.AF_INET6
	body[4] = syscall.RT_TABLE_MAIN
	body[5] = syscall.RTPROT_STATIC
	body[6] = syscall.RT_SCOPE_UNIVERSE
	body[7] = syscall.RTN_UNICAST
	g := gw.As16()
	oif := make([]byte, 4)
	binary.NativeEndian.PutUint32(oif, uint32(index))
	return nlmsg(syscall.RTM_NEWROUTE, seq, body, rtattr(syscall.RTA_GATEWAY, g[:]), rtattr(syscall.RTA_OIF, oif))
}

// setupIP6 configures bc's IPv6 address, logging instead of failing: the
// IPv4 service must keep running.
func setupIP6(bc BootConfig) {
	if !bc.IP6.Addr.IsValid() {
		return
	}
	dev := bc.IP.Device
	if dev == "" {
		dev = "eth0"
	}
	if err := configureIP6(dev, bc.IP6); err != nil {
		logf("%v", err)
		return
	}
	fmt.Fprintf(os.Stdout, "jitsu-init: IPv6 %s via %s on %s\n", bc.IP6.Addr, bc.IP6.Gateway, dev)
}
