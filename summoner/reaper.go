package summoner

import (
	"context"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// allStatsReader is implemented by hypervisors that report the interface
// counters of every running domain in one call (by domain name); the
// reaper prefers it to one hypervisor.StatsReader call per unikernel.
type allStatsReader interface {
	AllInterfaceStats(ctx context.Context) (map[string]hypervisor.InterfaceStats, error)
}

// meterWait bounds how long a scan waits for the traffic read it started:
// a hung read never delays idle-out by more; the next scans go on without
// it until it returns.
const meterWait = 250 * time.Millisecond

// reap looks for traffic and idle unikernels every StatsInterval.
// Run arms its first tick.
func (s *Summoner) reap(ctx context.Context, tick <-chan struct{}, t Timer) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-tick:
		}
		s.scan(ctx)
		tick, t = s.armTick() // before the hook: a test advances the clock after it
		if s.scanHook != nil {
			s.scanHook()
		}
	}
}

// armTick arms the reaper's next tick.
func (s *Summoner) armTick() (<-chan struct{}, Timer) { return s.after(s.opts.StatsInterval) }

// after returns a channel closed once d has passed on the clock.
func (s *Summoner) after(d time.Duration) (<-chan struct{}, Timer) {
	ch := make(chan struct{})
	t := s.clock.AfterFunc(d, func() { close(ch) })
	return ch, t
}

// scan reads the traffic counters (a change is activity) and posts idle
// events.
func (s *Summoner) scan(ctx context.Context) {
	if s.meterBusy.CompareAndSwap(false, true) {
		done := make(chan struct{})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.readTraffic(ctx)
			s.meterBusy.Store(false)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(meterWait):
		case <-ctx.Done():
		}
	}
	now := s.clock.Now()
	s.dropResting(now)
	for _, u := range s.units.Load().all {
		if u.State() != StateReady {
			continue
		}
		cfg := u.cfg.Load()
		if cfg.IdleTimeout > 0 && now.UnixNano()-u.activity.Load() >= int64(cfg.IdleTimeout) {
			s.post(u, event{kind: evIdle, reason: "idle"})
		}
	}
}

// readTraffic reads the Meter, or else the hypervisor's interface
// counters (of every domain in one call when it can), and marks the ready
// unikernels whose count changed as active. Errors are counted and
// logged, never ignored.
func (s *Summoner) readTraffic(ctx context.Context) {
	if s.opts.Meter != nil {
		s.readMeter(ctx)
		return
	}
	if s.allStats != nil {
		s.readAllStats(ctx)
		return
	}
	if s.stats == nil {
		return
	}
	for _, u := range s.units.Load().all {
		if u.State() != StateReady {
			u.statsSeen = false
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
		st, err := s.stats.InterfaceStats(cctx, u.domain)
		cancel()
		if err != nil {
			s.trafficError(u.name, err)
			continue
		}
		s.noteStats(u, st)
	}
}

// readAllStats reads every running domain's counters in one call: the
// reaper's read costs one hypervisor call every StatsInterval, not one
// (four libvirt calls) per running unikernel.
func (s *Summoner) readAllStats(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	all, err := s.allStats.AllInterfaceStats(cctx)
	cancel()
	if err != nil {
		s.trafficError("", err)
		return
	}
	for _, u := range s.units.Load().all {
		st, ok := all[u.domain]
		if u.State() != StateReady || !ok {
			// Not running (the reconciler sees to a ready unikernel
			// without its domain): its next counts start afresh.
			u.statsSeen = false
			continue
		}
		s.noteStats(u, st)
	}
}

// noteStats marks u active when what its guest sent changed since the last
// read. Only what the guest sends counts: the host's own multicast and
// neighbour chatter on the bridge reaches every guest and would keep all
// of them alive, while a download, an upload (its ACKs) or a WebSocket in
// use always makes the guest send.
func (s *Summoner) noteStats(u *unit, st hypervisor.InterfaceStats) {
	if u.statsSeen && (st.TxPackets != u.lastStats.TxPackets || st.TxBytes != u.lastStats.TxBytes) {
		u.activity.Store(s.clock.Now().UnixNano())
	}
	u.lastStats, u.statsSeen = st, true
}

// readMeter reads the client traffic counts.
func (s *Summoner) readMeter(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	counts, err := s.opts.Meter.Traffic(cctx)
	cancel()
	if err != nil {
		s.trafficError("", err)
		return
	}
	for _, u := range s.units.Load().all {
		if u.State() != StateReady {
			u.countSeen = false
			continue
		}
		n := sumCounts(counts, u.cfg.Load().Addrs)
		if u.countSeen && n != u.lastCount {
			u.activity.Store(s.clock.Now().UnixNano())
		}
		u.lastCount, u.countSeen = n, true
	}
}

func sumCounts(counts map[netip.Addr]uint64, addrs []netip.Addr) uint64 {
	var n uint64
	for _, a := range addrs {
		n += counts[a]
	}
	return n
}

func (s *Summoner) trafficError(name string, err error) {
	s.m.trafficErrors.Inc()
	s.log.Debug("reading traffic counters", zap.String("unikernel", name), zap.Error(err))
}
