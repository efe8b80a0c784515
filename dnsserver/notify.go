package dnsserver

import (
	"context"
	"net"
	"net/netip"
	"strings"
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
	for _, z := range n.s.snap.Load().zones {
		if len(z.secondaries) > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.probe(ctx, z)
			}()
		}
	}
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
	c := n.client(z, sec)
	wait := n.firstWait
	for try := 1; ; try++ {
		m := new(dns.Msg).SetNotify(z.origin)
		m.Answer = []dns.RR{z.soa}
		if z.tsig != nil {
			m.SetTsig(z.tsig.Name, z.tsig.Algorithm, tsigFudge, time.Now().Unix())
		}
		r, _, err := c.ExchangeContext(ctx, m, sec.String())
		count := func(result string) { n.s.met.notify.WithLabelValues(z.origin, result).Inc() }
		switch {
		case err == nil && r.Rcode == dns.RcodeSuccess:
			count("acknowledged")
			log.Debug("NOTIFY acknowledged", zap.Int("try", try))
			return
		case ctx.Err() != nil:
			return
		case err == nil:
			count("refused")
			log.Warn("NOTIFY refused", zap.Int("try", try), zap.String("rcode", dns.RcodeToString[r.Rcode]))
		default:
			count("unanswered")
			log.Info("NOTIFY not answered", zap.Int("try", try), zap.Error(err))
		}
		if try >= notifyTries {
			count("given_up")
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

// probe asks z's secondaries for their serial (once, at start-up) and
// raises ours past any newer one: the automatic serial lives in memory
// only, so after a restart a secondary may hold a newer serial than the
// configured one we start from.
func (n *notifier) probe(ctx context.Context, z *zoneData) {
	var mu sync.Mutex
	var newest uint32
	found := false
	var wg sync.WaitGroup
	for _, sec := range z.secondaries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serial, ok := n.secondarySerial(ctx, z, sec)
			mu.Lock()
			defer mu.Unlock()
			if ok && serialNewer(serial, z.soa.Serial) && (!found || serialNewer(serial, newest)) {
				newest, found = serial, true
			}
		}()
	}
	wg.Wait()
	if found && ctx.Err() == nil {
		if err := n.s.raiseSerial(z.origin, newest+1); err != nil {
			n.s.log.Warn("raise serial", zap.Error(err))
		}
	}
}

// secondarySerial asks sec for the serial of z it holds.
func (n *notifier) secondarySerial(ctx context.Context, z *zoneData, sec netip.AddrPort) (uint32, bool) {
	c := n.client(z, sec)
	m := new(dns.Msg).SetQuestion(z.origin, dns.TypeSOA)
	m.RecursionDesired = false
	if z.tsig != nil {
		m.SetTsig(z.tsig.Name, z.tsig.Algorithm, tsigFudge, time.Now().Unix())
	}
	r, _, err := c.ExchangeContext(ctx, m, sec.String())
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		return 0, false
	}
	soa, ok := r.Answer[0].(*dns.SOA)
	if !ok || !strings.EqualFold(soa.Hdr.Name, z.origin) {
		return 0, false
	}
	return soa.Serial, true
}

// client returns a DNS client for messages about z to sec: from our listen
// address, signed with z's key.
func (n *notifier) client(z *zoneData, sec netip.AddrPort) *dns.Client {
	c := &dns.Client{Net: "udp", Timeout: n.timeout}
	if src := n.s.notifySource(sec.Addr()); src.IsValid() {
		c.Dialer = &net.Dialer{Timeout: n.timeout, LocalAddr: &net.UDPAddr{IP: src.AsSlice()}}
	}
	if z.tsig != nil {
		c.TsigSecret = map[string]string{z.tsig.Name: z.tsig.Secret}
	}
	return c
}

// notifySource returns the address NOTIFY messages to dst are sent from:
// the first listen address of dst's family that is not a wildcard and is
// a loopback address exactly when dst is one, so that the secondary sees
// the address it transfers from (a loopback source cannot reach a
// secondary elsewhere: listen = ["127.0.0.1:53", "198.51.100.10:53"]
// notifies from 198.51.100.10). A secondary on loopback may also be
// notified from another local address. Invalid (the kernel chooses) if
// there is none.
func (s *Server) notifySource(dst netip.Addr) netip.Addr {
	dst = dst.Unmap()
	var other netip.Addr // of the family, but not of dst's loopbackness
	for _, l := range s.opts.Listen {
		host, _, err := net.SplitHostPort(l)
		if err != nil {
			continue
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			continue
		}
		a = a.Unmap()
		if a.IsUnspecified() || a.Is4() != dst.Is4() {
			continue
		}
		if a.IsLoopback() == dst.IsLoopback() {
			return a
		}
		if !other.IsValid() {
			other = a
		}
	}
	if dst.IsLoopback() {
		return other
	}
	return netip.Addr{}
}
