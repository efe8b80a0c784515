package summoner

import (
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"
)

// claim is what a unikernel counts against the budget: running, booting
// and memory, or warm and warmMem for a warm domain (the warm pool has
// its own limits).
type claim struct {
	running, booting int
	memory           uint64
	warm             int
	warmMem          uint64
}

func (c claim) add(d claim) claim {
	return claim{c.running + d.running, c.booting + d.booting, c.memory + d.memory, c.warm + d.warm, c.warmMem + d.warmMem}
}

func (c claim) sub(d claim) claim {
	return claim{c.running - d.running, c.booting - d.booting, c.memory - d.memory, c.warm - d.warm, c.warmMem - d.warmMem}
}

func (c claim) max(d claim) claim {
	return claim{max(c.running, d.running), max(c.booting, d.booting), max(c.memory, d.memory),
		max(c.warm, d.warm), max(c.warmMem, d.warmMem)}
}

// claimFor is what a unikernel in state st with mem bytes of memory claims.
// An unknown one may still run: it counts as running.
func claimFor(st State, mem uint64) claim {
	switch st {
	case StateStarting:
		return claim{running: 1, booting: 1, memory: mem}
	case StateReady, StateUnknown:
		return claim{running: 1, memory: mem}
	case StateSuspended:
		return claim{memory: mem}
	case StateWarm:
		return claim{warm: 1, warmMem: mem}
	}
	return claim{}
}

// budget is the resource limits; 0 is unlimited, but for warmMax (0: no
// warm pool). It is a pure value: plan and fitsWarm decide, the Summoner
// applies.
type budget struct {
	maxRunning, maxBooting int
	memory                 uint64
	warmMax                int
	warmMemory             uint64
}

// fits reports whether c fits the running, booting and memory limits
// (warm domains do not count there).
func (b budget) fits(c claim) bool {
	return (b.maxRunning == 0 || c.running <= b.maxRunning) &&
		(b.maxBooting == 0 || c.booting <= b.maxBooting) &&
		(b.memory == 0 || c.memory <= b.memory)
}

// fitsWarm reports whether c fits the warm pool's limits.
func (b budget) fitsWarm(c claim) bool {
	return c.warm <= b.warmMax && (b.warmMemory == 0 || c.warmMem <= b.warmMemory)
}

// candidate is a unikernel the budget may stop to make room: an idle ready
// one or a suspended one.
type candidate struct {
	claim    claim
	activity int64 // unix ns of its last activity: the oldest goes first
}

// plan decides whether need fits beside used (which excludes the
// claimant's own claim). If it does not, it chooses victims among cands,
// least recently active first, and returns their indexes; a suspended
// candidate (no running claim) is chosen only when memory is short. It
// returns why when nothing can make room.
func (b budget) plan(used, need claim, cands []candidate) (victims []int, why string) {
	want := used.add(need)
	if b.fits(want) {
		return nil, ""
	}
	if b.maxBooting > 0 && want.booting > b.maxBooting {
		return nil, "too many booting"
	}
	order := make([]int, len(cands))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return cands[order[i]].activity < cands[order[j]].activity })
	for _, i := range order {
		if b.fits(want) {
			break
		}
		c := cands[i].claim
		if c.running == 0 && (b.memory == 0 || want.memory <= b.memory) {
			continue // a suspended one only frees memory
		}
		victims = append(victims, i)
		want = want.sub(c)
	}
	if !b.fits(want) {
		return nil, "nothing idle to stop"
	}
	return victims, ""
}

// setClaimLocked replaces u's claim; s.budgetMu held.
func (s *Summoner) setClaimLocked(u *unit, c claim) {
	s.used = s.used.sub(u.claim).add(c)
	u.claim = c
	s.m.running.Set(float64(s.used.running))
	s.m.booting.Set(float64(s.used.booting))
	s.m.memory.Set(float64(s.used.memory))
	s.m.warm.Set(float64(s.used.warm))
	s.m.warmMemory.Set(float64(s.used.warmMem))
}

// reserveWarm claims a warm pool slot for u (u.mu held, u stopped) if the
// warm budget has room.
func (s *Summoner) reserveWarm(u *unit) bool {
	s.budgetMu.Lock()
	defer s.budgetMu.Unlock()
	need := claimFor(StateWarm, u.cfg.Load().Memory)
	if !s.limits.fitsWarm(s.used.sub(u.claim).add(need)) {
		return false
	}
	s.setClaimLocked(u, need)
	return true
}

// reserve claims the budget for booting u (u.mu held), choosing idle
// unikernels to evict if it does not fit. The victims' claims are released
// at once; the caller stops them.
func (s *Summoner) reserve(u *unit, now time.Time) ([]*unit, error) {
	s.budgetMu.Lock()
	defer s.budgetMu.Unlock()
	need := claimFor(StateStarting, u.cfg.Load().Memory).max(u.claim) // a warm one keeps its slot until it starts
	var units []*unit
	var cands []candidate
	for _, c := range s.units.Load().all {
		if c == u || c.evicting || c.claim == (claim{}) {
			continue
		}
		st := c.State()
		idle := st == StateReady && now.UnixNano()-c.activity.Load() >= int64(s.opts.EvictIdle) &&
			now.UnixNano()-c.upSince.Load() >= int64(s.opts.MinUp)
		if idle || st == StateSuspended {
			units = append(units, c)
			cands = append(cands, candidate{claim: c.claim, activity: c.activity.Load()})
		}
	}
	idx, why := s.limits.plan(s.used.sub(u.claim), need, cands)
	if why != "" {
		s.m.budgetRefused.Inc()
		s.log.Warn("summon refused: resource budget full", zap.String("unikernel", u.name), zap.String("why", why),
			zap.Int("running", s.used.running), zap.Int("booting", s.used.booting), zap.Uint64("memory", s.used.memory))
		return nil, fmt.Errorf("summon %q: %w (%s)", u.name, ErrBudget, why)
	}
	victims := make([]*unit, 0, len(idx))
	for _, i := range idx {
		v := units[i]
		s.setClaimLocked(v, claim{})
		v.evicting = true
		victims = append(victims, v)
	}
	s.setClaimLocked(u, need)
	return victims, nil
}
