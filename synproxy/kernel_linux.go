package synproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"github.com/mdlayher/netlink"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table (family inet) a proxy owns when
// Options.Table is empty. jitsu names its table after its instance id, so
// that two daemons on one host never touch each other's.
const TableName = "jitsu_synproxy"

const (
	set4Name    = "held4"
	set6Name    = "held6"
	udp4Name    = "udp4"
	udp6Name    = "udp6"
	meterChain  = "meter"
	meter4Name  = "meter4"
	meter6Name  = "meter6"
	packetHost  = 0 // skb pkt_type of a packet addressed to this host's MAC
	icmpv6MLD   = 130
	protoICMPv6 = 58
	// copyRange is how much of each queued packet is copied to user space:
	// an IPv6 header, a TCP header with the most options, and 20 bytes of
	// TCP Fast Open data so the byte bound sees real lengths.
	copyRange = 40 + 60 + 20
)

// kernelIO is the PacketIO of a real host: an nftables table that queues
// client SYNs to held addresses to an NFQUEUE, the neighbour table of the
// bridge, and raw sockets for resets.
type kernelIO struct {
	tableName string
	bridge    string
	nsPath    string
	queue     uint16
	mark      uint32 // SYNs with this packet mark are never queued
	maxQueue  uint32
	log       *zap.Logger

	mu       sync.Mutex // serialises nftables batches
	nft      *nftables.Conn
	table    *nftables.Table
	set4     *nftables.Set
	set6     *nftables.Set
	udp4     *nftables.Set
	udp6     *nftables.Set
	meter    *nftables.Chain
	meter4   *nftables.Set // metered addresses, a counter each
	meter6   *nftables.Set
	udp      map[netip.Addr]bool // addresses in udp4/udp6
	metered  map[netip.Addr]bool
	nl       *vnl.Handle
	brIndex  int
	raw4     int
	raw6     int
	nfq      *nfqueue.Nfqueue
	pkts     chan Packet
	failed   chan error // the queue stopped reading
	compat   bool       // NFQUEUE through the xtables compat target
	pinned   map[netip.Addr]net.HardwareAddr
	isClosed bool
}

func newKernelIO(table, bridge, nsPath string, queue uint16, mark uint32, l Limits, log *zap.Logger) *kernelIO {
	return &kernelIO{
		tableName: table,
		bridge:    bridge,
		nsPath:    nsPath,
		queue:     queue,
		mark:      mark,
		// Leave room above the proxy's own bound so that the proxy, not
		// the kernel, decides what overflows.
		maxQueue: uint32(l.Total) + 1024,
		log:      log,
		raw4:     -1,
		raw6:     -1,
		pinned:   make(map[netip.Addr]net.HardwareAddr),
		udp:      make(map[netip.Addr]bool),
		metered:  make(map[netip.Addr]bool),
	}
}

// inNetNS runs fn on a fresh OS thread switched into the namespace at path
// (the calling thread's namespace if path is empty). Sockets created by fn
// stay in that namespace. The thread is never unlocked, so it exits with its
// goroutine and no other goroutine ever runs in the namespace by accident.
func inNetNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", path, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func (k *kernelIO) Open(ctx context.Context) error {
	err := inNetNS(k.nsPath, func() error {
		var err error
		if k.nft, err = nftables.New(nftables.AsLasting()); err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		if k.nl, err = vnl.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		if k.raw4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
			return fmt.Errorf("raw ipv4 socket: %w", err)
		}
		if k.raw6, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
			return fmt.Errorf("raw ipv6 socket: %w", err)
		}
		k.nfq, err = nfqueue.Open(&nfqueue.Config{
			NfQueue:      k.queue,
			MaxPacketLen: copyRange,
			MaxQueueLen:  k.maxQueue,
			Copymode:     nfqueue.NfQnlCopyPacket,
			AfFamily:     unix.AF_UNSPEC,
		})
		if err != nil {
			return fmt.Errorf("nfqueue: %w", err)
		}
		return nil
	})
	if err != nil {
		k.closeSockets()
		return err
	}
	link, err := k.nl.LinkByName(k.bridge)
	if err != nil {
		k.closeSockets()
		return fmt.Errorf("find bridge %q: %w", k.bridge, err)
	}
	k.brIndex = link.Attrs().Index
	// A previous run that crashed left its table and pins: remove them.
	if err := cleanup(k.nft, k.nl, k.tableName, k.brIndex); err != nil {
		k.closeSockets()
		return fmt.Errorf("remove leftovers: %w", err)
	}
	// Bind the queue before the rules exist: with "bypass" a queued
	// packet with no listener is accepted, never lost.
	if err := k.nfq.Con.SetReadBuffer(4 << 20); err != nil {
		k.log.Debug("nfqueue read buffer", zap.Error(err))
	}
	k.pkts = make(chan Packet, k.maxQueue)
	k.failed = make(chan error, 1)
	err = k.nfq.RegisterWithErrorFunc(ctx, k.onPacket, func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		if errors.Is(err, unix.ENOBUFS) {
			// The kernel could not hand us some packets and dropped
			// them (the clients retransmit). Keep reading.
			k.log.Warn("nfqueue receive: packets lost", zap.Error(err))
			return 0
		}
		k.failed <- fmt.Errorf("nfqueue receive: %w", err)
		return 1
	})
	if err != nil {
		k.closeSockets()
		return fmt.Errorf("bind nfqueue %d: %w", k.queue, err)
	}
	if err := k.install(false); err != nil {
		k.log.Info("native nftables queue unavailable, using the xtables NFQUEUE target", zap.Error(err))
		if err2 := k.install(true); err2 != nil {
			k.closeSockets()
			return fmt.Errorf("install table %s: %w", k.tableName, errors.Join(err, err2))
		}
	}
	return nil
}

func (k *kernelIO) onPacket(a nfqueue.Attribute) int {
	if a.PacketID == nil {
		return 0
	}
	var data []byte
	if a.Payload != nil {
		data = append([]byte(nil), *a.Payload...)
	}
	select {
	case k.pkts <- Packet{ID: *a.PacketID, Data: data}:
	default:
		// Cannot happen while the channel is as large as the queue.
		_ = k.nfq.SetVerdict(*a.PacketID, nfqueue.NfDrop)
	}
	return 0
}

// install creates the table: sets of held addresses (TCP: held4, held6;
// UDP too: udp4, udp6), sets of metered addresses with a counter each
// (meter4, meter6) and the chain of fixed rules that counts in them (meter),
// and base chains in the forward (routed clients), output (clients on the
// host) and input (guests answering the host) hooks. Each base chain jumps
// to meter first; forward and output then queue, per family, TCP SYNs
// without ACK and UDP datagrams to the held addresses, with bypass: if
// nobody listens on the queue (jitsu died) the packet passes.
func (k *kernelIO) install(compat bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.table = k.nft.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: k.tableName})
	k.set4 = &nftables.Set{Table: k.table, Name: set4Name, KeyType: nftables.TypeIPAddr}
	k.set6 = &nftables.Set{Table: k.table, Name: set6Name, KeyType: nftables.TypeIP6Addr}
	k.udp4 = &nftables.Set{Table: k.table, Name: udp4Name, KeyType: nftables.TypeIPAddr}
	k.udp6 = &nftables.Set{Table: k.table, Name: udp6Name, KeyType: nftables.TypeIP6Addr}
	for _, set := range append([]*nftables.Set{k.set4, k.set6, k.udp4, k.udp6}, k.meterSets()...) {
		if err := k.nft.AddSet(set, nil); err != nil {
			return fmt.Errorf("add set %s: %w", set.Name, err)
		}
	}
	k.meter = k.nft.AddChain(&nftables.Chain{Name: meterChain, Table: k.table})
	for _, exprs := range append(k.meterRules(false), k.meterRules(true)...) {
		k.nft.AddRule(&nftables.Rule{Table: k.table, Chain: k.meter, Exprs: exprs})
	}
	prio := nftables.ChainPriorityMangle
	policy := nftables.ChainPolicyAccept
	for _, hook := range []struct {
		name  string
		hook  *nftables.ChainHook
		queue bool
	}{{"forward", nftables.ChainHookForward, true}, {"output", nftables.ChainHookOutput, true}, {"input", nftables.ChainHookInput, false}} {
		ch := k.nft.AddChain(&nftables.Chain{
			Name: hook.name, Table: k.table, Type: nftables.ChainTypeFilter,
			Hooknum: hook.hook, Priority: prio, Policy: &policy,
		})
		k.nft.AddRule(&nftables.Rule{Table: k.table, Chain: ch, Exprs: []expr.Any{
			&expr.Verdict{Kind: expr.VerdictJump, Chain: meterChain},
		}})
		if !hook.queue {
			continue
		}
		k.nft.AddRule(&nftables.Rule{Table: k.table, Chain: ch, Exprs: k.ruleExprs(unix.NFPROTO_IPV4, unix.IPPROTO_TCP, k.set4, compat)})
		k.nft.AddRule(&nftables.Rule{Table: k.table, Chain: ch, Exprs: k.ruleExprs(unix.NFPROTO_IPV6, unix.IPPROTO_TCP, k.set6, compat)})
		k.nft.AddRule(&nftables.Rule{Table: k.table, Chain: ch, Exprs: k.ruleExprs(unix.NFPROTO_IPV4, unix.IPPROTO_UDP, k.udp4, compat)})
		k.nft.AddRule(&nftables.Rule{Table: k.table, Chain: ch, Exprs: k.ruleExprs(unix.NFPROTO_IPV6, unix.IPPROTO_UDP, k.udp6, compat)})
	}
	if err := k.nft.Flush(); err != nil {
		return err
	}
	k.compat = compat
	return nil
}

// ruleExprs queues, for family proto, the TCP SYNs without ACK (l4 TCP)
// or the datagrams (l4 UDP) to an address in set.
func (k *kernelIO) ruleExprs(proto, l4 byte, set *nftables.Set, compat bool) []expr.Any {
	daddrOff, daddrLen := uint32(16), uint32(4)
	if proto == unix.NFPROTO_IPV6 {
		daddrOff, daddrLen = 24, 16
	}
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4}},
		// meta mark != bypass mark: jitsu's own readiness probes pass.
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, k.mark)},
	}
	if l4 == unix.IPPROTO_TCP {
		exprs = append(exprs,
			// tcp flags & (syn|ack) == syn
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x12}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
		)
	}
	exprs = append(exprs,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOff, Len: daddrLen},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
	)
	if !compat {
		return append(exprs, &expr.Queue{Num: k.queue, Total: 1, Flag: expr.QueueFlagBypass})
	}
	// struct xt_NFQ_info_v3 { __u16 queuenum, queues_total, flags; },
	// host byte order, padded to 8 bytes; flags 1 = NFQ_FLAG_BYPASS.
	info := make(xt.Unknown, 8)
	binary.NativeEndian.PutUint16(info[0:], k.queue)
	binary.NativeEndian.PutUint16(info[2:], 1)
	binary.NativeEndian.PutUint16(info[4:], 1)
	return append(exprs, &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info})
}

func (k *kernelIO) ReadPacket(ctx context.Context) (Packet, error) {
	select {
	case <-ctx.Done():
		return Packet{}, ctx.Err()
	case p := <-k.pkts:
		return p, nil
	case err := <-k.failed:
		return Packet{}, err
	}
}

func (k *kernelIO) Verdict(id uint32, accept bool) error {
	v := nfqueue.NfDrop
	if accept {
		v = nfqueue.NfAccept
	}
	return k.nfq.SetVerdict(id, v)
}

func (k *kernelIO) WritePacket(pkt []byte) error {
	if len(pkt) < 20 {
		return errors.New("packet too short")
	}
	switch pkt[0] >> 4 {
	case 4:
		sa := &unix.SockaddrInet4{}
		copy(sa.Addr[:], pkt[16:20])
		return unix.Sendto(k.raw4, pkt, 0, sa)
	case 6:
		if len(pkt) < 40 {
			return errors.New("packet too short")
		}
		sa := &unix.SockaddrInet6{}
		copy(sa.Addr[:], pkt[24:40])
		return unix.Sendto(k.raw6, pkt, 0, sa)
	}
	return errors.New("not an IP packet")
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func (k *kernelIO) element(a netip.Addr) (*nftables.Set, []nftables.SetElement) {
	if a.Is4() {
		return k.set4, []nftables.SetElement{{Key: a.AsSlice()}}
	}
	return k.set6, []nftables.SetElement{{Key: a.AsSlice()}}
}

// udpSet is the set of addresses whose datagrams are held, for a's family.
func (k *kernelIO) udpSet(a netip.Addr) *nftables.Set {
	if a.Is4() {
		return k.udp4
	}
	return k.udp6
}

func (k *kernelIO) Hold(a netip.Addr, mac net.HardwareAddr, udp bool) error {
	// Pin first, so the first released SYN finds the guest's MAC.
	err := k.nl.NeighSet(&vnl.Neigh{
		LinkIndex: k.brIndex, Family: family(a), State: vnl.NUD_PERMANENT,
		IP: a.AsSlice(), HardwareAddr: mac,
	})
	if err != nil {
		return fmt.Errorf("pin neighbour %v to %v: %w", a, mac, err)
	}
	k.pinned[a] = mac
	k.mu.Lock()
	defer k.mu.Unlock()
	set, el := k.element(a)
	if err := k.nft.SetAddElements(set, el); err != nil {
		return fmt.Errorf("add %v to set %s: %w", a, set.Name, err)
	}
	switch {
	case udp && !k.udp[a]:
		if err := k.nft.SetAddElements(k.udpSet(a), el); err != nil {
			return fmt.Errorf("add %v to set %s: %w", a, k.udpSet(a).Name, err)
		}
	case !udp && k.udp[a]:
		if err := k.nft.SetDeleteElements(k.udpSet(a), el); err != nil {
			return fmt.Errorf("delete %v from set %s: %w", a, k.udpSet(a).Name, err)
		}
	}
	if err := k.nft.Flush(); err != nil {
		return fmt.Errorf("add %v to set %s: %w", a, set.Name, err)
	}
	k.udp[a] = udp
	return nil
}

func (k *kernelIO) Unhold(a netip.Addr, ready bool) error {
	var errs []error
	k.mu.Lock()
	set, el := k.element(a)
	if err := k.nft.SetDeleteElements(set, el); err != nil {
		errs = append(errs, fmt.Errorf("delete %v from set %s: %w", a, set.Name, err))
	} else if err := k.nft.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("delete %v from set %s: %w", a, set.Name, err))
	}
	if k.udp[a] {
		delete(k.udp, a)
		if err := k.nft.SetDeleteElements(k.udpSet(a), el); err != nil {
			errs = append(errs, fmt.Errorf("delete %v from set %s: %w", a, k.udpSet(a).Name, err))
		} else if err := k.nft.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete %v from set %s: %w", a, k.udpSet(a).Name, err))
		}
	}
	k.mu.Unlock()
	if mac, ok := k.pinned[a]; ok {
		delete(k.pinned, a)
		n := &vnl.Neigh{LinkIndex: k.brIndex, Family: family(a), IP: a.AsSlice()}
		var err error
		if ready {
			// Hand the entry back to the kernel as an ordinary confirmed
			// one: used at once, re-validated by ARP/NDP as usual later.
			n.State = vnl.NUD_REACHABLE
			n.HardwareAddr = mac
			err = k.nl.NeighSet(n)
		} else {
			err = k.nl.NeighDel(n)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unpin neighbour %v: %w", a, err))
		}
	}
	return errors.Join(errs...)
}

func (k *kernelIO) Close() error {
	var errs []error
	if k.nfq != nil {
		// Unbinding the queue makes the kernel drop whatever is still
		// queued; the proxy has given every held packet a verdict before.
		if err := k.nfq.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close nfqueue: %w", err))
		}
		k.nfq = nil
	}
	if k.nft != nil && k.nl != nil {
		if err := cleanup(k.nft, k.nl, k.tableName, k.brIndex); err != nil {
			errs = append(errs, err)
		}
	}
	k.closeSockets()
	return errors.Join(errs...)
}

func (k *kernelIO) closeSockets() {
	if k.nfq != nil {
		_ = k.nfq.Close()
		k.nfq = nil
	}
	if k.nft != nil {
		_ = k.nft.CloseLasting()
		k.nft = nil
	}
	if k.nl != nil {
		k.nl.Close()
		k.nl = nil
	}
	for _, fd := range []*int{&k.raw4, &k.raw6} {
		if *fd >= 0 {
			_ = unix.Close(*fd)
			*fd = -1
		}
	}
}

// Cleanup removes what a proxy with the nftables table table on bridge
// left behind in the calling thread's network namespace when it could not
// clean up (a crash): that table and the neighbour entries pinned for the
// addresses still in its sets; other tables are never touched. It is safe
// to call when there is nothing to remove.
func Cleanup(bridge, table string) error {
	nft, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("cleanup synproxy: nftables: %w", err)
	}
	defer nft.CloseLasting()
	nl, err := vnl.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("cleanup synproxy: netlink: %w", err)
	}
	defer nl.Close()
	brIndex := 0
	if link, err := nl.LinkByName(bridge); err == nil {
		brIndex = link.Attrs().Index
	}
	if err := cleanup(nft, nl, table, brIndex); err != nil {
		return fmt.Errorf("cleanup synproxy: %w", err)
	}
	return nil
}

// cleanup deletes the table, and the permanent neighbour entries on the
// bridge (brIndex 0: none) of the addresses in its sets.
func cleanup(nft *nftables.Conn, nl *vnl.Handle, name string, brIndex int) error {
	table, err := nft.ListTableOfFamily(name, nftables.TableFamilyINet)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || isNotFound(err) {
			return nil
		}
		return fmt.Errorf("list table %s: %w", name, err)
	}
	var errs []error
	if brIndex != 0 {
		sets, err := nft.GetSets(table)
		if err != nil {
			errs = append(errs, fmt.Errorf("list sets of %s: %w", name, err))
		}
		for _, s := range sets {
			els, err := nft.GetSetElements(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("list set %s: %w", s.Name, err))
				continue
			}
			for _, el := range els {
				a, ok := netip.AddrFromSlice(el.Key)
				if !ok {
					continue
				}
				n := &vnl.Neigh{LinkIndex: brIndex, Family: family(a), IP: a.AsSlice(), State: vnl.NUD_PERMANENT}
				if err := nl.NeighDel(n); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("delete neighbour %v: %w", a, err))
				}
			}
		}
	}
	nft.DelTable(table)
	if err := nft.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("delete table %s: %w", name, err))
	}
	return errors.Join(errs...)
}

func isNotFound(err error) bool {
	var oe *netlink.OpError
	return errors.As(err, &oe) && errors.Is(oe.Err, unix.ENOENT)
}
