package synproxy

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Internal tunables: not user-facing (the hold's bounds are, and come
// from the config).
const (
	// DefaultQueue is the NFQUEUE number used when Options.Queue is zero.
	DefaultQueue = 7541
	// DefaultBypassMark is the packet mark (SO_MARK) of SYNs the proxy
	// never holds, used when Options.BypassMark is zero: jitsu's own
	// readiness probes carry it, so they reach the guest while the
	// clients' SYNs are held.
	DefaultBypassMark = 0x6a697473 // "jits"
)

// Limits bound the hold; every field is required (the user-facing values
// belong to package config). A SYN that does not fit is dropped (the client
// retransmits it later) and counted with reason "overflow"; a held SYN older
// than MaxAge is dropped and counted with reason "age".
type Limits struct {
	PerAddress int           // held SYNs per held address
	Total      int           // held SYNs over all addresses
	Bytes      int64         // bytes of held IP packets over all addresses
	MaxAge     time.Duration // longest time one SYN is held
}

// check reports a missing bound.
func (l Limits) check() error {
	if l.PerAddress <= 0 || l.Total <= 0 || l.Bytes <= 0 || l.MaxAge <= 0 {
		return fmt.Errorf("limits %+v: every bound must be positive", l)
	}
	return nil
}

// Options configure a Proxy.
type Options struct {
	// Bridge is the bridge the guests are attached to; neighbour entries are
	// pinned on it. Required unless IO is set.
	Bridge string
	// Table is the name of the nftables table (family inet) the proxy owns;
	// empty means TableName.
	Table string
	// NetNS is the path of the network namespace (e.g. /run/netns/host)
	// holding the bridge; empty means the namespace of the calling thread
	// when Run starts.
	NetNS string
	// Queue is the NFQUEUE number; zero means DefaultQueue.
	Queue uint16
	// BypassMark is the packet mark of SYNs that are never held (the
	// readiness probe's); zero means DefaultBypassMark.
	BypassMark uint32
	// Logger receives diagnostics; nil means zap.NewNop().
	Logger *zap.Logger
	// Registerer receives the proxy's metrics; nil means no registration.
	Registerer prometheus.Registerer
	// Limits bound the hold. Required.
	Limits Limits
	// OnPacket, if set, is called for every packet seen for a held
	// address (a client SYN, or a datagram when the address is held for
	// UDP), with its IP protocol number (6 or 17): activity, and for an
	// address armed while its unikernel is stopped, the signal to boot it.
	// It is called from the packet loop, without the proxy's lock (it may
	// call Hold), and must not block.
	OnPacket func(addr netip.Addr, proto uint8)
	// OnPacketFrom, if set, is called instead of OnPacket with the
	// packet's source address too (admission control charges the boot it
	// causes to the source).
	OnPacketFrom func(src, addr netip.Addr, proto uint8)
	// IO replaces the kernel packet path (nftables + NFQUEUE + neighbour
	// table + raw sockets); tests use an in-memory one. Nil means the kernel.
	IO PacketIO
}

// Packet is one intercepted packet, as queued by the kernel.
type Packet struct {
	ID   uint32 // the verdict handle
	Data []byte // the IP packet, from its IP header on
}

// PacketIO is the packet path the proxy drives. The kernel implementation
// uses an nftables table and NFQUEUE; unit tests use an in-memory one.
// Hold, Unhold, Meter, Verdict and WritePacket are called with the proxy's
// lock held and must not call back into the Proxy; Counters is called
// without it, concurrently with the others.
type PacketIO interface {
	// Open installs the interception and starts queueing SYNs to held
	// addresses. Packets are delivered until ctx ends or Close is called.
	Open(ctx context.Context) error
	// ReadPacket returns the next intercepted packet; it returns ctx.Err()
	// once ctx ends.
	ReadPacket(ctx context.Context) (Packet, error)
	// Verdict lets the packet go on its way (accept) or discards it.
	Verdict(id uint32, accept bool) error
	// WritePacket sends an IP packet built by the proxy (a TCP RST).
	WritePacket(pkt []byte) error
	// Hold starts intercepting client SYNs to addr (and UDP datagrams if
	// udp) and pins the neighbour entry of addr to mac. Holding a held
	// address again updates its MAC and whether UDP is intercepted.
	Hold(addr netip.Addr, mac net.HardwareAddr, udp bool) error
	// Unhold stops intercepting SYNs to addr. ready says the guest is up:
	// its neighbour entry is turned into an ordinary reachable one; else it
	// is deleted.
	Unhold(addr netip.Addr, ready bool) error
	// Meter starts counting the client traffic of addr (see
	// Proxy.Traffic); metering an address again changes nothing.
	Meter(addr netip.Addr) error
	// Counters returns the packet count of every metered address.
	Counters() (map[netip.Addr]uint64, error)
	// Close removes everything Open, Hold and Meter added to the host.
	Close() error
}

// Proxy holds client SYNs to addresses whose unikernel is booting. It
// implements the summoner's Gate: Hold, Release, Drop.
type Proxy struct {
	opts   Options
	limits Limits
	log    *zap.Logger
	m      *metrics
	io     PacketIO
	now    func() time.Time

	mu      sync.Mutex
	started bool
	running bool
	ready   chan struct{} // closed once Run has installed the rules
	addrs   map[netip.Addr]*heldAddr
	metered map[netip.Addr]bool // every address ever held or tracked
	nextUDP uint64              // numbers held datagrams
	order   *list.List          // of *entry, oldest first
	count   int
	bytes   int64
}

type heldAddr struct {
	mac   net.HardwareAddr
	udp   bool // datagrams are held too
	flows map[flowKey]*list.Element
}

type entry struct {
	id uint32
	s  syn
	at time.Time
}

// New returns a Proxy; nothing is changed on the host until Run.
func New(opts Options) (*Proxy, error) {
	if opts.IO == nil {
		if opts.Bridge == "" {
			return nil, errors.New("new synproxy: no bridge")
		}
		if opts.Queue == 0 {
			opts.Queue = DefaultQueue
		}
	}
	if err := opts.Limits.check(); err != nil {
		return nil, fmt.Errorf("new synproxy: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("new synproxy: %w", err)
	}
	p := &Proxy{
		opts:    opts,
		limits:  opts.Limits,
		log:     opts.Logger.Named("synproxy"),
		m:       m,
		io:      opts.IO,
		now:     time.Now,
		addrs:   make(map[netip.Addr]*heldAddr),
		metered: make(map[netip.Addr]bool),
		order:   list.New(),
		ready:   make(chan struct{}),
	}
	if p.io == nil {
		mark := opts.BypassMark
		if mark == 0 {
			mark = DefaultBypassMark
		}
		table := opts.Table
		if table == "" {
			table = TableName
		}
		p.io = newKernelIO(table, opts.Bridge, opts.NetNS, opts.Queue, mark, p.limits, p.log)
	}
	return p, nil
}

// Running is closed once Run has installed its rules and intercepts SYNs:
// before that, a SYN to a held address is not caught. jitsu answers for its
// unikernels only from then on.
func (p *Proxy) Running() <-chan struct{} { return p.ready }

// Run installs the interception, handles intercepted SYNs until ctx ends,
// then drops whatever is still held (the clients retransmit) and removes
// everything it added to the host. It returns nil when ctx ended, or the
// error that stopped it. Run may be called once.
func (p *Proxy) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return errors.New("synproxy: Run called twice")
	}
	p.started = true
	p.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := p.io.Open(ctx); err != nil {
		return fmt.Errorf("synproxy: open: %w", err)
	}
	p.mu.Lock()
	p.running = true
	for a, h := range p.addrs { // held before Run started
		if err := p.io.Hold(a, h.mac, h.udp); err != nil {
			p.log.Error("hold", zap.Stringer("addr", a), zap.Error(err))
		}
	}
	for a := range p.metered {
		if err := p.io.Meter(a); err != nil {
			p.log.Error("meter", zap.Stringer("addr", a), zap.Error(err))
		}
	}
	p.mu.Unlock()
	close(p.ready)

	readErr := make(chan error, 1)
	go func() { readErr <- p.readLoop(ctx) }()

	tick := p.limits.MaxAge / 4
	tick = min(max(tick, time.Millisecond), time.Second)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-readErr:
			readErr = nil
			break loop
		case <-ticker.C:
			p.expire()
		}
	}
	cancel()
	if readErr != nil {
		<-readErr
	}
	return errors.Join(err, p.shutdown())
}

// shutdown drops every held SYN, unholds every address and closes the IO.
func (p *Proxy) shutdown() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for e := p.order.Front(); e != nil; e = p.order.Front() {
		p.remove(e, false, ReasonShutdown)
	}
	for a := range p.addrs {
		if err := p.io.Unhold(a, false); err != nil {
			errs = append(errs, fmt.Errorf("unhold %v: %w", a, err))
		}
	}
	p.running = false
	p.updateGauges()
	if err := p.io.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close: %w", err))
	}
	return errors.Join(errs...)
}

func (p *Proxy) readLoop(ctx context.Context) error {
	for {
		pkt, err := p.io.ReadPacket(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("synproxy: read packet: %w", err)
		}
		p.handle(pkt)
	}
}

// handle takes one intercepted packet into the hold, or decides it.
func (p *Proxy) handle(pkt Packet) {
	s, err := decode(pkt.Data)
	if err != nil {
		p.m.dropped.WithLabelValues(ReasonMalformed).Inc()
		p.log.Debug("malformed packet", zap.Error(err))
		p.verdict(pkt.ID, false)
		return
	}
	p.mu.Lock()
	h := p.addrs[s.dst]
	if h == nil || (s.proto == protoUDP && !h.udp) {
		// Released (or never held) since the kernel queued it: pass it on.
		p.verdict(pkt.ID, true)
		p.mu.Unlock()
		return
	}
	if s.proto == protoUDP {
		p.nextUDP++
		s.n = p.nextUDP
	}
	// Keep the latest SYN of a 4-tuple: a retransmission replaces the
	// one it retransmits, so the client's latest options and timestamp
	// are those the guest sees.
	if old, ok := h.flows[s.flowKey]; ok {
		p.remove(old, false, ReasonDuplicate)
	}
	if len(h.flows) >= p.limits.PerAddress || p.count >= p.limits.Total || p.bytes+int64(s.length) > p.limits.Bytes {
		// Full: the new SYN goes, those already held stay (a flood cannot
		// evict clients that came first).
		p.m.dropped.WithLabelValues(ReasonOverflow).Inc()
		p.verdict(pkt.ID, false)
		p.mu.Unlock()
	} else {
		h.flows[s.flowKey] = p.order.PushBack(&entry{id: pkt.ID, s: s, at: p.now()})
		p.count++
		p.bytes += int64(s.length)
		p.m.held.Inc()
		p.updateGauges()
		p.mu.Unlock()
	}
	switch {
	case p.opts.OnPacketFrom != nil:
		p.opts.OnPacketFrom(s.src, s.dst, s.proto)
	case p.opts.OnPacket != nil:
		p.opts.OnPacket(s.dst, s.proto)
	}
}

// remove takes e out of the hold and gives its verdict. A dropped SYN is
// counted with reason (empty: not counted). p.mu is held.
func (p *Proxy) remove(e *list.Element, accept bool, reason string) {
	en := e.Value.(*entry)
	p.order.Remove(e)
	if h := p.addrs[en.s.dst]; h != nil && h.flows[en.s.flowKey] == e {
		delete(h.flows, en.s.flowKey)
	}
	p.count--
	p.bytes -= int64(en.s.length)
	if !accept && reason != "" {
		p.m.dropped.WithLabelValues(reason).Inc()
	}
	p.verdict(en.id, accept)
}

func (p *Proxy) verdict(id uint32, accept bool) {
	if err := p.io.Verdict(id, accept); err != nil {
		p.log.Warn("verdict", zap.Uint32("id", id), zap.Bool("accept", accept), zap.Error(err))
	}
}

func (p *Proxy) updateGauges() {
	p.m.heldNow.Set(float64(p.count))
	p.m.heldBytes.Set(float64(p.bytes))
}

// expire drops held SYNs older than MaxAge.
func (p *Proxy) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cut := p.now().Add(-p.limits.MaxAge)
	for e := p.order.Front(); e != nil && !e.Value.(*entry).at.After(cut); e = p.order.Front() {
		p.remove(e, false, ReasonAge)
	}
	p.updateGauges()
}

// Hold starts holding the first packets to addrs — client TCP SYNs, and
// UDP datagrams too when protos contains 17 — whose guest has the MAC
// address mac, and pins their neighbour entries to mac. It is called before
// the domain starts, and while it is stopped (the address is then armed:
// the first packet calls OnPacket, and is replayed once the summoned
// unikernel is ready). Holding an address again updates its MAC and
// protocols and keeps what is held. Addresses held before Run starts are
// installed when it does. Every address ever held is metered (Traffic).
func (p *Proxy) Hold(addrs []netip.Addr, mac net.HardwareAddr, protos []uint8) error {
	if len(mac) == 0 {
		return errors.New("synproxy: hold: no MAC address")
	}
	for _, a := range addrs {
		if !a.IsValid() {
			return fmt.Errorf("synproxy: hold: invalid address %v", a)
		}
	}
	udp := false
	for _, pr := range protos {
		switch pr {
		case protoTCP:
		case protoUDP:
			udp = true
		default:
			return fmt.Errorf("synproxy: hold: protocol %d (want 6, TCP, or 17, UDP)", pr)
		}
	}
	mac = append(net.HardwareAddr(nil), mac...)
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, a := range addrs {
		a = a.Unmap()
		h := p.addrs[a]
		if h == nil {
			h = &heldAddr{flows: make(map[flowKey]*list.Element)}
			p.addrs[a] = h
		}
		if h.udp && !udp {
			p.dropUDP(a)
		}
		h.mac, h.udp = mac, udp
		if p.running {
			if err := p.io.Hold(a, mac, udp); err != nil {
				errs = append(errs, fmt.Errorf("synproxy: hold %v: %w", a, err))
			}
		}
		errs = append(errs, p.meterLocked(a))
	}
	return errors.Join(errs...)
}

// dropUDP discards the datagrams held for a, no longer held for UDP. p.mu
// is held.
func (p *Proxy) dropUDP(a netip.Addr) {
	var next *list.Element
	for e := p.order.Front(); e != nil; e = next {
		next = e.Next()
		if en := e.Value.(*entry); en.s.dst == a && en.s.proto == protoUDP {
			p.remove(e, false, ReasonFailed)
		}
	}
	p.updateGauges()
}

// Track meters addrs (see Traffic) without holding them: the addresses of
// unikernels that run without having been held by this proxy (adopted
// after a restart of jitsu).
func (p *Proxy) Track(addrs []netip.Addr) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, a := range addrs {
		if !a.IsValid() {
			return fmt.Errorf("synproxy: track: invalid address %v", a)
		}
		errs = append(errs, p.meterLocked(a.Unmap()))
	}
	return errors.Join(errs...)
}

// meterLocked meters a. p.mu is held.
func (p *Proxy) meterLocked(a netip.Addr) error {
	if p.metered[a] {
		return nil
	}
	p.metered[a] = true
	if !p.running {
		return nil
	}
	if err := p.io.Meter(a); err != nil {
		delete(p.metered, a)
		return fmt.Errorf("synproxy: meter %v: %w", a, err)
	}
	return nil
}

// Traffic implements the summoner's Meter: for every metered address, a
// monotonic count of the unicast packets between it and peers that are
// not link-local, in both directions, routed or from the host itself.
// The guest's broadcast and multicast, IPv6 router solicitations, MLD and
// neighbour discovery, ARP, and jitsu's readiness probes are not counted:
// guest chatter never keeps a unikernel alive. Before Run, and for an
// address metered since the last read, the count may start at 0.
func (p *Proxy) Traffic(ctx context.Context) (map[netip.Addr]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("synproxy: traffic: %w", err)
	}
	p.mu.Lock()
	running := p.running
	p.mu.Unlock()
	if !running {
		return map[netip.Addr]uint64{}, nil
	}
	m, err := p.io.Counters()
	if err != nil {
		return nil, fmt.Errorf("synproxy: traffic: %w", err)
	}
	return m, nil
}

// Release is called when the guest is ready: it stops holding addrs, turns
// their neighbour entries into ordinary ones and delivers every held packet
// to the guest at once, oldest first. It returns how many it delivered.
func (p *Proxy) Release(addrs []netip.Addr) (replayed int, err error) {
	return p.finish(addrs, true)
}

// Drop is called when the boot failed: it stops holding addrs, deletes their
// neighbour entries and answers every held TCP client with a RST, so its
// connect fails at once instead of timing out; held datagrams are
// discarded.
func (p *Proxy) Drop(addrs []netip.Addr) error {
	_, err := p.finish(addrs, false)
	return err
}

func (p *Proxy) finish(addrs []netip.Addr, ready bool) (int, error) {
	op := "drop"
	if ready {
		op = "release"
	}
	set := make(map[netip.Addr]bool, len(addrs))
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	replayed := 0
	for _, a := range addrs {
		a = a.Unmap()
		if p.addrs[a] == nil {
			continue
		}
		set[a] = true
		// Stop intercepting first: a SYN arriving from now on goes
		// straight through, and the neighbour entry is in place for the
		// SYNs released below.
		if p.running {
			if err := p.io.Unhold(a, ready); err != nil {
				errs = append(errs, fmt.Errorf("synproxy: %s %v: %w", op, a, err))
			}
		}
	}
	var next *list.Element
	for e := p.order.Front(); e != nil; e = next {
		next = e.Next()
		en := e.Value.(*entry)
		if !set[en.s.dst] {
			continue
		}
		if ready {
			p.remove(e, true, "")
			p.m.replayed.Inc()
			replayed++
			continue
		}
		if en.s.proto == protoUDP {
			p.remove(e, false, ReasonFailed)
			continue
		}
		if rst, err := buildReset(en.s); err != nil {
			errs = append(errs, err)
		} else if err := p.io.WritePacket(rst); err != nil {
			errs = append(errs, fmt.Errorf("synproxy: reset %v:%d: %w", en.s.src, en.s.sport, err))
		} else {
			p.m.resets.Inc()
		}
		p.remove(e, false, ReasonFailed)
	}
	for a := range set {
		delete(p.addrs, a)
	}
	p.updateGauges()
	return replayed, errors.Join(errs...)
}

// Held returns the number of SYNs and bytes held now.
func (p *Proxy) Held() (syns int, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count, p.bytes
}
