package dnsserver

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// NOTIFY retries (RFC 1996 section 3.6): notifyTries sends per change and
// secondary, the first wait notifyFirstWait, doubling, each send waiting
// notifyTimeout for the answer.
const (
	notifyTries     = 5
	notifyFirstWait = time.Second
	notifyTimeout   = 2 * time.Second
)

// notifier sends NOTIFY to a zone's secondaries whenever the zone's serial
// changes. A newer change of a zone cancels the sends still retrying for
// the older one.
type notifier struct {
	s       *Server
	mu      sync.Mutex
	pending map[string]bool
	wake    chan struct{}
	// firstWait and timeout are notifyFirstWait and notifyTimeout
	// (shorter in tests).
	firstWait, timeout time.Duration
}

func newNotifier(s *Server) *notifier {
	return &notifier{s: s, pending: map[string]bool{}, wake: make(chan struct{}, 1),
		firstWait: notifyFirstWait, timeout: notifyTimeout}
}

// trigger asks for NOTIFY to be sent for the zones (coalesced).
func (n *notifier) trigger(origins []string) {
	if len(origins) == 0 {
		return
	}
	n.mu.Lock()
	for _, o := range origins {
		n.pending[o] = true
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Run sends the NOTIFY messages asked for until ctx ends, then waits for
// its senders.
func (n *notifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	cancels := map[string]context.CancelFunc{}
	defer func() {
		for _, c := range cancels {
			c()
		}
		wg.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.wake:
		}
		n.mu.Lock()
		origins := n.pending
		n.pending = map[string]bool{}
		n.mu.Unlock()
		snap := n.s.snap.Load()
		for origin := range origins {
			if c := cancels[origin]; c != nil {
				c()
				delete(cancels, origin)
			}
			z := snap.zones[origin]
			if z == nil || len(z.secondaries) == 0 {
				continue
			}
			zctx, cancel := context.WithCancel(ctx)
			cancels[origin] = cancel
			for _, sec := range z.secondaries {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n.send(zctx, z, sec)
				}()
			}
		}
	}
}

// send notifies one secondary of z's current serial, retrying until it
// answers or the tries are used up.
func (n *notifier) send(ctx context.Context, z *zoneData, sec netip.AddrPort) {
	log := n.s.log.With(zap.String("zone", z.origin), zap.Stringer("secondary", sec), zap.Uint32("serial", z.soa.Serial))
	c := &dns.Client{Net: "udp", Timeout: n.timeout}
	if src := n.s.notifySource(sec.Addr()); src.IsValid() {
		c.Dialer = &net.Dialer{Timeout: n.timeout, LocalAddr: &net.UDPAddr{IP: src.AsSlice()}}
	}
	if z.tsig != nil {
		c.TsigSecret = map[string]string{z.tsig.Name: z.tsig.Secret}
	}
	wait := n.firstWait
	for try := 1; ; try++ {
		m := new(dns.Msg).SetNotify(z.origin)
		m.Answer = []dns.RR{z.soa}
		if z.tsig != nil {
			m.SetTsig(z.tsig.Name, z.tsig.Algorithm, tsigFudge, time.Now().Unix())
		}
		r, _, err := c.ExchangeContext(ctx, m, sec.String())
		switch {
		case err == nil && r.Rcode == dns.RcodeSuccess:
			log.Debug("NOTIFY acknowledged", zap.Int("try", try))
			return
		case ctx.Err() != nil:
			return
		case err == nil:
			log.Warn("NOTIFY refused", zap.Int("try", try), zap.String("rcode", dns.RcodeToString[r.Rcode]))
		default:
			log.Info("NOTIFY not answered", zap.Int("try", try), zap.Error(err))
		}
		if try >= notifyTries {
			log.Warn("NOTIFY given up; the secondary will find the change at its next refresh", zap.Int("tries", try))
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait *= 2
	}
}

// notifySource returns the address NOTIFY messages to dst are sent from:
// the first listen address of dst's family that is not a wildcard, so
// that the secondary sees the address it transfers from; invalid (the
// kernel chooses) if there is none.
func (s *Server) notifySource(dst netip.Addr) netip.Addr {
	for _, l := range s.opts.Listen {
		host, _, err := net.SplitHostPort(l)
		if err != nil {
			continue
		}
		a, err := netip.ParseAddr(host)
		if err != nil || a.IsUnspecified() || a.Unmap().Is4() != dst.Unmap().Is4() {
			continue
		}
		return a.Unmap()
	}
	return netip.Addr{}
}

// addrOf returns the IP address of a UDP or TCP address (invalid if none).
func addrOf(a net.Addr) netip.Addr {
	switch x := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(x.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(x.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}
