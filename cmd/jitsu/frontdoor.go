package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/dnsserver"
	"github.com/jitsu-unikernel/jitsu/frontdoor"
	"github.com/jitsu-unikernel/jitsu/seeddisk"
	"github.com/jitsu-unikernel/jitsu/summoner"
)

// frontDoor wires the front door (package frontdoor) into the daemon: it
// is the front door's Summoner, and it rewrites the DNS answers of
// frontdoor = true unikernels to the front door's IPv4 address.
type frontDoor struct {
	srv *frontdoor.Server // nil when [frontdoor] listen is empty
	sum *summoner.Summoner
	// public maps frontdoor = true unikernels to the front door's IPv4;
	// guest maps every unikernel to its own IPv4 (for Touch).
	public atomic.Pointer[map[string]netip.Addr]
	guest  atomic.Pointer[map[string]netip.Addr]
}

// newFrontDoor builds the front door of cfg (not yet listening).
func newFrontDoor(cfg *config.Config, sum *summoner.Summoner, log *zap.Logger, reg prometheus.Registerer) (*frontDoor, error) {
	f := &frontDoor{sum: sum}
	f.update(cfg)
	fc := cfg.Frontdoor
	if len(fc.Listen) == 0 {
		return f, nil
	}
	c := frontdoor.Config{
		Routes:                 frontdoorRoutes(cfg, sum.SettleBound),
		NameTimeout:            fc.NameTimeout,
		MaxHeaderBytes:         fc.MaxHeaderBytes,
		MaxPending:             fc.MaxPending,
		MaxPendingPerSource:    fc.MaxPendingPerSource,
		MaxWaiting:             fc.MaxWaiting,
		MaxWaitingPerUnikernel: fc.MaxWaitingPerUnikernel,
		MaxConnections:         fc.MaxConnections,
		DialTimeout:            fc.DialTimeout,
		ActivityInterval:       config.DefaultFrontdoorActivityInterval,
		Summoner:               f,
		Log:                    log,
		Registry:               reg,
	}
	for _, ap := range fc.Listen {
		c.Listeners = append(c.Listeners, frontdoor.Listener{Addr: ap, TLS: fc.IsTLS(ap.Port()), GuestPort: ap.Port()})
	}
	srv, err := frontdoor.New(c)
	if err != nil {
		return nil, fmt.Errorf("front door: %w", err)
	}
	f.srv = srv
	return f, nil
}

// frontdoorRoutes maps the names of the frontdoor = true unikernels to
// them. bound is the summoner's SettleBound: the front door waits for a
// boot as long as the summoner says it is in progress (queued in the
// start queue, or starting), at most that long.
func frontdoorRoutes(cfg *config.Config, bound func(name string) time.Duration) map[string]frontdoor.Route {
	routes := map[string]frontdoor.Route{}
	for _, u := range cfg.Unikernels {
		if !u.Frontdoor {
			continue
		}
		for _, n := range u.DNS {
			routes[strings.TrimSuffix(n, ".")] = frontdoor.Route{
				Unikernel: u.Name, ProxyProtocol: u.ProxyProtocol,
				MaxWait: bound(u.Name), BootTimeout: u.BootTimeout,
			}
		}
	}
	return routes
}

// update applies a (re)loaded configuration. Listen addresses and limits
// take effect at the next start of jitsu.
func (f *frontDoor) update(cfg *config.Config) {
	public, guest := map[string]netip.Addr{}, map[string]netip.Addr{}
	fd4 := cfg.Frontdoor.IPv4()
	for _, u := range cfg.Unikernels {
		guest[u.Name] = u.IP
		if u.Frontdoor && fd4.IsValid() {
			public[u.Name] = fd4
		}
	}
	f.public.Store(&public)
	f.guest.Store(&guest)
	if f.srv != nil {
		f.srv.SetRoutes(frontdoorRoutes(cfg, f.sum.SettleBound))
	}
}

// settleGrace is how long SummonWait lets the summoner finish entering
// Ready (releasing the gate) once the boot has settled.
const settleGrace = time.Second

// doneCtx is a context that is done: WaitState with it returns at once.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// SummonWait implements frontdoor.Summoner: summon by the front-door
// trigger (after the summoner adopted what runs), wait until the boot
// settles, and return the guest's IPv4 address if it is ready. A boot it
// starts goes through admission control, charged to client.
func (f *frontDoor) SummonWait(ctx context.Context, name string, client netip.Addr) (netip.Addr, error) {
	select {
	case <-f.sum.Running():
	case <-ctx.Done():
		return netip.Addr{}, fmt.Errorf("wait for the summoner: %w", ctx.Err())
	}
	addrs, err := f.sum.SummonByFrom(ctx, client, name, summoner.TriggerFrontDoor)
	if err != nil {
		return netip.Addr{}, err
	}
	if ch := f.sum.WaitReady(name); ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return netip.Addr{}, fmt.Errorf("wait for %q: %w", name, ctx.Err())
		}
	}
	// Ready already (the common case: a new connection to a running
	// unikernel) needs no grace timer: WaitState with a done context only
	// looks.
	if f.sum.WaitState(doneCtx, name, summoner.StateReady) != nil {
		wctx, cancel := context.WithTimeout(ctx, settleGrace)
		err := f.sum.WaitState(wctx, name, summoner.StateReady)
		cancel()
		if err != nil {
			return netip.Addr{}, err
		}
	}
	for _, a := range addrs {
		if a.Is4() {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("unikernel %q has no IPv4 address", name)
}

// Active implements frontdoor.Summoner: traffic through the front door is
// activity of the unikernel, like a SYN to its own address.
func (f *frontDoor) Active(name string) {
	if a, ok := (*f.guest.Load())[name]; ok {
		f.sum.Touch(a)
	}
}

// dnsSummoner wraps the DNS server's Summoner: for frontdoor = true
// unikernels the IPv4 answer is the front door's address (AAAA stays the
// guest's own, reached directly).
func (f *frontDoor) dnsSummoner(inner dnsserver.Summoner) dnsserver.Summoner {
	return frontdoorDNS{f: f, inner: inner}
}

// frontdoorDNS forwards every optional interface the DNS server asserts
// on its Summoner (TestDNSWrappersForward checks them all).
var (
	_ dnsserver.SourceSummoner = frontdoorDNS{}
	_ dnsserver.Waiter         = frontdoorDNS{}
)

type frontdoorDNS struct {
	f     *frontDoor
	inner dnsserver.Summoner
}

func (d frontdoorDNS) Summon(ctx context.Context, name string) ([]netip.Addr, error) {
	addrs, err := d.inner.Summon(ctx, name)
	return d.public(name, addrs, err)
}

// public rewrites the IPv4 answer of a frontdoor = true unikernel.
func (d frontdoorDNS) public(name string, addrs []netip.Addr, err error) ([]netip.Addr, error) {
	pub, ok := (*d.f.public.Load())[name]
	if err != nil || !ok {
		return addrs, err
	}
	return publicAddrs(addrs, pub), nil
}

// SummonFrom forwards dnsserver.SourceSummoner (admission by source) to
// the wrapped Summoner, or calls its Summon.
func (d frontdoorDNS) SummonFrom(ctx context.Context, src netip.Addr, name string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	var err error
	if ss, ok := d.inner.(dnsserver.SourceSummoner); ok {
		addrs, err = ss.SummonFrom(ctx, src, name)
	} else {
		addrs, err = d.inner.Summon(ctx, name)
	}
	return d.public(name, addrs, err)
}

// WaitReady forwards dnsserver.Waiter (response delay) to the wrapped
// Summoner; nil (no boot to wait for) when it has none.
func (d frontdoorDNS) WaitReady(name string) <-chan struct{} {
	if w, ok := d.inner.(dnsserver.Waiter); ok {
		return w.WaitReady(name)
	}
	return nil
}

// publicAddrs replaces the IPv4 addresses in addrs by pub.
func publicAddrs(addrs []netip.Addr, pub netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	out = append(out, pub)
	for _, a := range addrs {
		if !a.Unmap().Is4() {
			out = append(out, a)
		}
	}
	return out
}

// writeSeedDisks writes the seed-file disk image of every unikernel with
// files (see seeddisk), owned by QEMU's user.
func writeSeedDisks(cfg *config.Config) error {
	owner := seeddisk.QEMUOwner()
	var errs []error
	for _, u := range cfg.Unikernels {
		if len(u.Files) == 0 {
			continue
		}
		if err := seeddisk.Write(seeddisk.Path(cfg.Hypervisor.SeedDir, u.Name), u.Files, owner); err != nil {
			errs = append(errs, fmt.Errorf("unikernel %q: %w", u.Name, err))
		}
	}
	return errors.Join(errs...)
}
