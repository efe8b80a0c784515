package summoner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// Admitter decides whether a summon may start a boot: the admission
// control that keeps anyone on the internet from booting the whole host
// (admission.Controller fits). It is asked only when a summon would start
// a boot (never for a unikernel that runs or boots already, nor for the
// operator's Start), with the address the summon came from (invalid when
// unknown: charged to the global rate only). It must not block.
type Admitter interface {
	Admit(src netip.Addr, name string, now time.Time) (ok bool, reason string)
}

// ErrAdmission: admission control refused to start a boot. Summon and
// SummonFrom return the unikernel's addresses with it, so that the caller
// can answer them anyway.
var ErrAdmission = errors.New("boot refused by admission control")

// admitLogEvery is how often at most a refusal is logged.
const admitLogEvery = 10 * time.Second

// admitReq says whether a request goes through admission control, and
// for which source.
type admitReq struct {
	check bool       // false: the operator, or a summon admitted already
	src   netip.Addr // invalid: unknown source
}

// from returns an admitReq checked for src.
func from(src netip.Addr) admitReq { return admitReq{check: true, src: src.Unmap()} }

// admit asks the Admitter, if any, whether u may boot now; a refusal is
// counted by reason and returned as ErrAdmission. u.mu is held.
func (s *Summoner) admit(u *unit, ar admitReq, now time.Time) error {
	if !ar.check || s.opts.Admit == nil {
		return nil
	}
	ok, reason := s.opts.Admit.Admit(ar.src, u.name, now)
	if ok {
		return nil
	}
	s.m.admission.WithLabelValues(reason).Inc()
	n := s.admitRefused.Add(1)
	// Under attack this runs thousands of times a second: log one line per
	// admitLogEvery (the metric counts every refusal).
	if last := s.admitLogAt.Load(); now.UnixNano()-last >= int64(admitLogEvery) && s.admitLogAt.CompareAndSwap(last, now.UnixNano()) {
		s.log.Warn("boots refused by admission control", zap.String("unikernel", u.name),
			zap.Stringer("source", ar.src), zap.String("reason", reason), zap.Int64("refused_so_far", n))
	}
	return fmt.Errorf("summon %q: %w (%s)", u.name, ErrAdmission, reason)
}

// SummonFrom is Summon for a query that came from src: the boot it may
// start is charged to src's prefix by admission control. On ErrAdmission
// the addresses are returned too.
func (s *Summoner) SummonFrom(ctx context.Context, src netip.Addr, name string) ([]netip.Addr, error) {
	return s.summon(ctx, from(src), name, TriggerDNS)
}

// SummonByFrom is SummonBy for a client at src (the front door).
func (s *Summoner) SummonByFrom(ctx context.Context, src netip.Addr, name string, t Trigger) ([]netip.Addr, error) {
	return s.summon(ctx, from(src), name, t)
}

// OnPacketFrom is OnPacket for a packet from src: a boot it starts is
// charged to src's prefix by admission control.
func (s *Summoner) OnPacketFrom(src, addr netip.Addr, proto Proto) {
	s.onPacket(from(src), addr, proto)
}
