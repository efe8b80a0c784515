package summoner

import (
	"time"

	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// Reasons a resting unikernel is dropped (the label of
// jitsu_summoner_rest_drops_total).
const (
	dropAfter  = "drop_after" // suspended or saved for its DropAfter
	dropMemory = "memory"     // the host is short of memory
)

// dropResting drops (destroys, discarding the save image) the suspended
// and saved unikernels that have rested for their DropAfter, and, when the
// host is short of memory (Options.LowMemory), the least recently active
// suspended one. Called by the reaper on every scan.
func (s *Summoner) dropResting(now time.Time) {
	var lru *unit
	for _, u := range s.units.Load().all {
		st := u.State()
		if st != StateSuspended && st != StateSaved {
			continue
		}
		u.mu.Lock()
		since, busy := u.since, u.pending || u.removed
		u.mu.Unlock()
		if busy {
			continue
		}
		if d := u.cfg.Load().DropAfter; d > 0 && now.Sub(since) >= d {
			s.drop(u, st, dropAfter)
			continue
		}
		if st == StateSuspended && (lru == nil || u.activity.Load() < lru.activity.Load()) {
			lru = u
		}
	}
	if lru != nil && s.opts.LowMemory != nil && s.opts.LowMemory() {
		s.drop(lru, StateSuspended, dropMemory)
	}
}

// drop posts the stop that drops u, resting in st.
func (s *Summoner) drop(u *unit, st State, reason string) {
	s.m.drops.WithLabelValues(reason).Inc()
	s.log.Info("dropping a resting unikernel", zap.String("unikernel", u.name),
		zap.Stringer("state", st), zap.String("reason", reason))
	s.post(u, event{kind: evStop, mode: hypervisor.StopDestroy, reason: reason, discard: true})
}
