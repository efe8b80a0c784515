package synproxy

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Meter adds the counting rules of a to the meter chain: one per direction
// (and, for IPv6, per ICMPv6 or not), each with a counter, tagged with the
// address in the rule's user data.
//
//	client -> guest: daddr a, mark != bypass, saddr not link-local
//	guest -> client: saddr a, pkttype host (the guest sent it to the
//	                 host's MAC: no broadcast, no multicast), daddr not
//	                 link-local and not multicast
//
// and, for IPv6, ICMPv6 counts only below type 130 (errors and echo): MLD
// and neighbour and router discovery are the guest's own chatter. ARP is
// not IP and never reaches these hooks.
func (k *kernelIO) Meter(a netip.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.metered[a] {
		return nil
	}
	for _, exprs := range k.meterRules(a) {
		k.nft.AddRule(&nftables.Rule{Table: k.table, Chain: k.meter, Exprs: exprs, UserData: []byte(a.String())})
	}
	if err := k.nft.Flush(); err != nil {
		return fmt.Errorf("add meter rules of %v: %w", a, err)
	}
	k.metered[a] = true
	return nil
}

// meterRules returns the expressions of a's counting rules.
func (k *kernelIO) meterRules(a netip.Addr) [][]expr.Any {
	nfproto, saddr, daddr, n := byte(unix.NFPROTO_IPV4), uint32(12), uint32(16), uint32(4)
	if a.Is6() {
		nfproto, saddr, daddr, n = unix.NFPROTO_IPV6, 8, 24, 16
	}
	family := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
	}
	is := func(off uint32) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
		}
	}
	toGuest := cat(family, is(daddr),
		[]expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, k.mark)},
		},
		notLinkLocal(a.Is6(), saddr))
	fromGuest := cat(family, is(saddr),
		[]expr.Any{
			&expr.Meta{Key: expr.MetaKeyPKTTYPE, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{packetHost}},
		},
		notLinkLocal(a.Is6(), daddr), notMulticast(a.Is6(), daddr))
	counter := []expr.Any{&expr.Counter{}}
	if a.Is4() {
		return [][]expr.Any{cat(toGuest, counter), cat(fromGuest, counter)}
	}
	notICMP := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{protoICMPv6}},
	}
	icmpBelowMLD := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protoICMPv6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: []byte{icmpv6MLD}},
	}
	return [][]expr.Any{
		cat(toGuest, notICMP, counter), cat(toGuest, icmpBelowMLD, counter),
		cat(fromGuest, notICMP, counter), cat(fromGuest, icmpBelowMLD, counter),
	}
}

// notLinkLocal matches an address at off that is not link-local
// (169.254.0.0/16, fe80::/10).
func notLinkLocal(v6 bool, off uint32) []expr.Any {
	mask, val := []byte{0xff, 0xff}, []byte{169, 254}
	if v6 {
		mask, val = []byte{0xff, 0xc0}, []byte{0xfe, 0x80}
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 2},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: mask, Xor: []byte{0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: val},
	}
}

// notMulticast matches an address at off that is neither multicast
// (224.0.0.0/4, ff00::/8) nor the IPv4 limited broadcast.
func notMulticast(v6 bool, off uint32) []expr.Any {
	if v6 {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0xff}},
		}
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0xf0}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0xe0}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0xff, 0xff, 0xff, 0xff}},
	}
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Counters sums the counters of the meter chain's rules per address.
func (k *kernelIO) Counters() (map[netip.Addr]uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	rules, err := k.nft.GetRules(k.table, k.meter)
	if err != nil {
		return nil, fmt.Errorf("list meter rules: %w", err)
	}
	out := make(map[netip.Addr]uint64, len(k.metered))
	for a := range k.metered {
		out[a] = 0
	}
	for _, r := range rules {
		a, err := netip.ParseAddr(string(r.UserData))
		if err != nil {
			continue
		}
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				out[a] += c.Packets
			}
		}
	}
	return out, nil
}
