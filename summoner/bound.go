package summoner

import "time"

// SettleBound returns the longest a boot of the unikernel name, summoned
// now, may take to settle (ready, or failed: WaitReady's channel closes)
// by the summoner's own deadlines; 0 for an unknown name. It is the sum
// of:
//
//   - a stop under way, which a summon waits behind: StopTimeout, then
//     CallTimeout to ask the hypervisor what a failed stop left;
//   - the start queue: at most k other boots are starting (k+1 is the
//     least of the number of unikernels, MaxBooting and MaxRunning, those
//     set), MaxStarting of them at a time, each holding its slot at most
//     CreateTimeout plus the longest BootTimeout: k/MaxStarting such
//     rounds (none without a queue, MaxStarting 0);
//   - its own boot: CreateTimeout plus its BootTimeout;
//   - a snapshot unikernel's first boot queues and boots twice (the boot,
//     then the save and restore), so these two terms count twice;
//   - CallTimeout for the destroy of a failed boot.
//
// It is a worst case, far above a typical boot: the outer bound of
// whoever waits on WaitReady (the front door), not an estimate. It changes
// only with Update.
func (s *Summoner) SettleBound(name string) time.Duration {
	um := s.units.Load()
	u := um.byName[name]
	if u == nil {
		return 0
	}
	var longest time.Duration
	for _, o := range um.all {
		longest = max(longest, o.cfg.Load().BootTimeout)
	}
	o := s.opts
	boots := len(um.all) // each has at most one boot
	for _, limit := range []int{o.MaxBooting, o.MaxRunning} {
		if limit > 0 {
			boots = min(boots, limit)
		}
	}
	var queue time.Duration
	if o.MaxStarting > 0 {
		queue = time.Duration((boots-1)/o.MaxStarting) * (o.CreateTimeout + longest)
	}
	cfg := u.cfg.Load()
	own := queue + o.CreateTimeout + cfg.BootTimeout
	if cfg.Snapshot {
		own *= 2
	}
	return o.StopTimeout + o.CallTimeout + own + o.CallTimeout
}
