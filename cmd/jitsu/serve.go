package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/control"
	"github.com/jitsu-unikernel/jitsu/dnsserver"
	"github.com/jitsu-unikernel/jitsu/guestcpu"
	"github.com/jitsu-unikernel/jitsu/hypervisor"
	hvlibvirt "github.com/jitsu-unikernel/jitsu/hypervisor/libvirt"
	"github.com/jitsu-unikernel/jitsu/summoner"
	"github.com/jitsu-unikernel/jitsu/synproxy"
	"github.com/jitsu-unikernel/jitsu/web"
)

func runServe(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "serve", "")
	path := fs.String("config", defaultConfig, "config file")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	logJSON := fs.Bool("log-json", false, "log JSON even on a terminal")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(env, err)
		return exitUsage
	}
	log, err := newLogger(*level, *logJSON)
	if err != nil {
		fmt.Fprintf(env.stderr, "jitsu serve: %v\n", err)
		return exitUsage
	}
	defer func() { _ = log.Sync() }()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if err := serve(ctx, cfg, log, hup); err != nil {
		log.Error("jitsu stopped", zap.Error(err))
		return exitFail
	}
	log.Info("jitsu stopped")
	return exitOK
}

// daemon is the running jitsu: the parts wired together, and the control
// socket's view of them.
type daemon struct {
	log   *zap.Logger
	cpu   *guestcpu.Weigher
	sum   *summoner.Summoner
	dns   *dnsserver.Server
	proxy *synproxy.Proxy // nil when the SYN proxy is off
	fd    *frontDoor
	// serving are closed once unikernels are served (the SYN proxy
	// intercepts, the summoner has adopted what runs): until then the
	// control socket answers errStarting.
	serving []<-chan struct{}

	reloadMu sync.Mutex // serializes reloads
	cfgMu    sync.Mutex
	cfg      *config.Config
}

// parts are jitsu's long-lived parts, built and not yet running.
type parts struct {
	d     *daemon
	hv    *hvlibvirt.Hypervisor
	proxy *synproxy.Proxy // nil when the SYN proxy is off
	sum   *summoner.Summoner
	dns   *dnsserver.Server
	ctl   *control.Server // nil without a control socket
	web   *web.Server     // nil without a metrics address
	fd    *frontDoor      // its srv is nil without [frontdoor] listen
}

// serve runs jitsu until ctx is done. hup delivers reload requests.
func serve(ctx context.Context, cfg *config.Config, log *zap.Logger, hup <-chan os.Signal) error {
	log.Info("jitsu starting", zap.String("version", version), zap.String("config", cfg.File),
		zap.Int("zones", len(cfg.Zones)), zap.Int("unikernels", len(cfg.Unikernels)),
		zap.String("instance", cfg.Daemon.ID))
	// Nothing is touched before the lock is held: a second daemon of the
	// same instance must not clean up the first one's table.
	unlock, err := lockInstance(cfg.Daemon.LockFile(), cfg.Daemon.ID)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := synproxy.PinBridgeMAC(cfg.Network.Bridge, log.Named("network")); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Hypervisor.ConsoleDir, 0o755); err != nil {
		return fmt.Errorf("console dir: %w", err)
	}
	if err := writeSeedDisks(cfg); err != nil {
		return fmt.Errorf("seed disks: %w", err)
	}
	p, err := build(cfg, log)
	if err != nil {
		return err
	}
	defer p.hv.Close()
	return p.run(ctx, hup)
}

// openHypervisor opens the libvirt backend of cfg (it connects in the
// background).
func openHypervisor(cfg *config.Config, log *zap.Logger, reg prometheus.Registerer) (*hvlibvirt.Hypervisor, error) {
	hv, err := hvlibvirt.Open(hvlibvirt.Options{
		URI:             cfg.Hypervisor.URI,
		Logger:          log.Named("hypervisor"),
		ConsoleDir:      cfg.Hypervisor.ConsoleDir,
		ShutdownTimeout: cfg.Hypervisor.ShutdownTimeout,
		Instance:        cfg.Daemon.ID,
		Registerer:      reg,
	})
	if err != nil {
		return nil, fmt.Errorf("libvirt backend: %w", err)
	}
	return hv, nil
}

// build builds every part. Nothing listens or runs yet, except the
// libvirt backend's background connection attempts.
func build(cfg *config.Config, log *zap.Logger) (*parts, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d := &daemon{log: log, cfg: cfg}
	p := &parts{d: d}

	hv, err := openHypervisor(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	p.hv = hv
	fail := func(err error) (*parts, error) {
		hv.Close()
		return nil, err
	}
	var gate summoner.Gate
	var meter summoner.Meter // nil: idle-out reads the guests' interface counters
	var probeMark uint32
	// Unikernel names are answered once the SYN proxy intercepts (a
	// client's first SYN must find its rules in place) and the summoner
	// has adopted what runs (libvirt is reachable).
	var summonAfter []<-chan struct{}
	if cfg.SynProxy.Enabled {
		if p.proxy, err = newProxy(cfg, log, reg, d); err != nil {
			return fail(err)
		}
		gate = p.proxy
		meter = p.proxy
		// The readiness probe's SYNs carry the mark the proxy lets through.
		probeMark = synproxy.DefaultBypassMark
		summonAfter = append(summonAfter, p.proxy.Running())
	}
	admit, err := newAdmission(cfg)
	if err != nil {
		return fail(err)
	}
	d.cpu = newWeigher(cfg, log)
	p.sum, err = summoner.New(summoner.Options{
		Hypervisor:   hv,
		Gate:         gate,
		Meter:        meter,
		Logger:       log.Named("summoner"),
		Registerer:   reg,
		MaxRunning:   cfg.Budget.MaxRunning,
		MaxBooting:   cfg.Budget.MaxBooting,
		MaxStarting:  cfg.Budget.MaxStarting,
		MemoryBudget: cfg.Budget.Memory,
		MinUp:        cfg.Budget.MinUp,
		WarmMax:      cfg.Budget.WarmMax,
		WarmMemory:   cfg.Budget.WarmMemory,
		// One directory per instance: each sweeps its own files only.
		SnapshotDir:  filepath.Join(cfg.Hypervisor.SnapshotDir, cfg.Daemon.ID),
		SnapshotSalt: cfg.Daemon.ID,
		Admit:        admit,
		Placer:       d.cpu,
		LowMemory:    lowMemory,
		ProbeMark:    probeMark,
		StopTimeout:  cfg.Hypervisor.ShutdownTimeout + stopSlack,
	}, unikernels(cfg))
	if err != nil {
		return fail(fmt.Errorf("summoner: %w", err))
	}
	d.sum = p.sum
	summonAfter = append(summonAfter, p.sum.Running())
	d.serving = summonAfter
	if p.fd, err = newFrontDoor(cfg, p.sum, log.Named("frontdoor"), reg); err != nil {
		return fail(err)
	}
	d.fd = p.fd
	if err := p.buildServers(cfg, log, reg, summonAfter); err != nil {
		return fail(err)
	}
	return p, nil
}

// newProxy builds the SYN proxy, after removing what a previous run that
// crashed left behind.
func newProxy(cfg *config.Config, log *zap.Logger, reg prometheus.Registerer, d *daemon) (*synproxy.Proxy, error) {
	if err := synproxy.Cleanup(cfg.Network.Bridge, cfg.Daemon.NFTTable()); err != nil {
		log.Warn("cleaning up a previous run's SYN proxy rules", zap.Error(err))
	}
	proxy, err := synproxy.New(synproxy.Options{
		Bridge:     cfg.Network.Bridge,
		Table:      cfg.Daemon.NFTTable(),
		Queue:      nfQueue(cfg),
		Logger:     log.Named("synproxy"),
		Registerer: reg,
		Limits:     synLimits(cfg),
		BypassMark: synproxy.DefaultBypassMark,
		// The packet's source is charged for the boot it causes.
		OnPacketFrom: d.onPacket,
	})
	if err != nil {
		return nil, fmt.Errorf("SYN proxy: %w", err)
	}
	// Meter every unikernel's address, also those adopted running.
	if err := proxy.Track(unikernelAddrs(cfg)); err != nil {
		return nil, fmt.Errorf("SYN proxy: %w", err)
	}
	return proxy, nil
}

// buildServers builds the DNS server, the control socket and the web
// server.
func (p *parts) buildServers(cfg *config.Config, log *zap.Logger, reg *prometheus.Registry, summonAfter []<-chan struct{}) error {
	var err error
	// Static records are served from the first second, whether libvirt is
	// reachable or not; unikernel names get SERVFAIL until summonAfter.
	p.dns, err = dnsserver.New(dnsConfig(cfg), dnsserver.Options{
		Listen: cfg.DNS.Listen,
		// Also the Waiter of the response delay; answers per
		// admission.on_refuse; A records of frontdoor = true unikernels
		// are the front door's.
		Summoner:      p.fd.dnsSummoner(newAdmissionDNS(p.sum, cfg)),
		SummonAfter:   summonAfter,
		Logger:        log.Named("dns"),
		Registerer:    reg,
		RRL:           dnsRRL(cfg),
		Cookies:       cfg.DNS.Cookies,
		CookieSecret:  cfg.DNS.CookieSecret,
		ResponseDelay: responseDelay(cfg),
	})
	if err != nil {
		return fmt.Errorf("DNS server: %w", err)
	}
	p.d.dns = p.dns
	if cfg.Control.Socket != "" {
		if p.ctl, err = control.New(cfg.Control.Socket, cfg.Control.Mode, p.d, log.Named("control")); err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
	}
	if cfg.Metrics.Listen != "" {
		auth, err := web.LoadAuth(cfg.Metrics.BasicAuthFile, cfg.Metrics.BearerTokenFile)
		if err != nil {
			return err
		}
		p.web = web.New(web.Options{Registry: reg, Pprof: cfg.Metrics.Pprof, Daemon: p.d,
			Logger: log.Named("web"), Auth: auth, Listen: cfg.Metrics.Listen})
	}
	return nil
}

// run runs every part in one group until ctx is done or one of them fails,
// and returns once all have stopped.
func (p *parts) run(ctx context.Context, hup <-chan os.Signal) error {
	g, gctx := errgroup.WithContext(ctx)
	goRun(g, gctx, "DNS server", p.dns.Run)
	ready := []<-chan struct{}{p.dns.Ready(), p.sum.Running()}
	if p.proxy != nil {
		goRun(g, gctx, "SYN proxy", p.proxy.Run)
		ready = append(ready, p.proxy.Running())
	}
	// The summoner adopts what runs as it starts: it starts once libvirt
	// is reachable (the backend keeps connecting in the background).
	goRun(g, gctx, "summoner", func(ctx context.Context) error {
		select {
		case <-p.hv.Connected():
		case <-ctx.Done():
			return nil
		}
		return p.sum.Run(ctx)
	})
	if p.ctl != nil {
		goRun(g, gctx, "control socket", p.ctl.Run)
	}
	if p.fd.srv != nil {
		goRun(g, gctx, "front door", p.fd.srv.Run)
		ready = append(ready, p.fd.srv.Ready())
	}
	if p.web != nil {
		goRun(g, gctx, "metrics and status page", p.web.Run)
		g.Go(func() error {
			select {
			case <-p.web.Ready():
				p.d.log.Info("metrics and status page", zap.String("url", "http://"+p.web.Addr().String()+"/"))
			case <-gctx.Done():
			}
			return nil
		})
	}
	goRun(g, gctx, "guest CPU weight", func(ctx context.Context) error { return p.d.cpu.Run(ctx, weighEvery) })
	g.Go(func() error { p.d.reloadOn(gctx, hup); return nil })
	g.Go(func() error {
		for _, c := range ready {
			select {
			case <-c:
			case <-gctx.Done():
				return nil
			}
		}
		p.d.log.Info("jitsu ready")
		return nil
	})
	return g.Wait()
}

// goRun runs part in g; an error other than the end of ctx stops the group.
func goRun(g *errgroup.Group, ctx context.Context, name string, part func(context.Context) error) {
	g.Go(func() error {
		if err := part(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// reloadOn reloads the config on each hup until ctx is done.
func (d *daemon) reloadOn(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := d.Reload(ctx); err != nil {
				d.log.Error("reload refused, the running config stays", zap.Error(err))
			}
		}
	}
}

// responseDelay is Jitsu's response delay: without the SYN proxy, the DNS
// answer waits for the unikernel to be ready, up to this long.
func responseDelay(cfg *config.Config) time.Duration {
	if cfg.SynProxy.Enabled {
		return 0
	}
	return cfg.DNS.ResponseDelay
}

// stopSlack is how much longer than the guest's shutdown timeout the
// summoner waits for a stop call.
const stopSlack = 15 * time.Second

// onPacket is called by the SYN proxy for each packet from src it holds
// for addr: the summoner counts it as activity and summons its unikernel
// if that protocol is one of its triggers (admission control charging
// src).
func (d *daemon) onPacket(src, addr netip.Addr, proto uint8) { d.sum.OnPacketFrom(src, addr, proto) }

// errStarting answers the control socket until unikernels are served.
var errStarting = errors.New("jitsu is starting: libvirt not connected yet, or the SYN proxy not running yet")

// starting returns errStarting until unikernels are served.
func (d *daemon) starting() error {
	for _, c := range d.serving {
		select {
		case <-c:
		default:
			return errStarting
		}
	}
	return nil
}

// Status implements control.Daemon.
func (d *daemon) Status(context.Context) ([]control.UnikernelStatus, error) {
	if err := d.starting(); err != nil {
		return nil, err
	}
	sts := d.sum.Status()
	out := make([]control.UnikernelStatus, 0, len(sts))
	for _, s := range sts {
		us := control.UnikernelStatus{
			Name:             s.Name,
			State:            s.State.String(),
			Since:            s.Since,
			LastActivity:     s.LastActivity,
			Boots:            s.Boots,
			LastBootDuration: s.LastBootDuration,
			LastError:        s.LastError,
		}
		for _, a := range s.Addrs {
			us.Addrs = append(us.Addrs, a.String())
		}
		if !s.LastBoot.Queued.IsZero() || !s.LastBoot.Start.IsZero() {
			us.LastBoot = &control.BootTimeline{Query: s.LastBoot.Query, Trigger: string(s.LastBoot.Trigger),
				Queued: s.LastBoot.Queued, Start: s.LastBoot.Start, Ready: s.LastBoot.Ready, FirstReplay: s.LastBoot.FirstReplay, Mode: s.LastBoot.Mode}
		}
		out = append(out, us)
	}
	return out, nil
}

// Start implements control.Daemon.
func (d *daemon) Start(ctx context.Context, name string) error {
	if err := d.starting(); err != nil {
		return err
	}
	return controlErr(d.sum.Start(ctx, name))
}

// Stop implements control.Daemon.
func (d *daemon) Stop(ctx context.Context, name, mode string) error {
	var m hypervisor.StopMode
	if mode != "" {
		var err error
		if m, err = hypervisor.ParseStopMode(mode); err != nil {
			return fmt.Errorf("%w: %v", control.ErrInvalid, err)
		}
	}
	if err := d.starting(); err != nil {
		return err
	}
	return controlErr(d.sum.Stop(ctx, name, m))
}

// controlErr maps the summoner's errors to the control protocol's.
func controlErr(err error) error {
	if errors.Is(err, summoner.ErrUnknown) {
		return fmt.Errorf("%w: %v", control.ErrUnknown, err)
	}
	return err
}

// Reload implements control.Daemon: it re-reads the config file and applies
// zones and unikernels live. An invalid file changes nothing.
func (d *daemon) Reload(context.Context) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.cfgMu.Lock()
	old := d.cfg
	d.cfgMu.Unlock()

	cfg, err := config.Load(old.File)
	if err != nil {
		return fmt.Errorf("%w: %s", control.ErrConfig, err.Error())
	}
	for _, w := range restartOnly(old, cfg) {
		d.log.Warn("config change needs a restart to take effect", zap.String("key", w))
	}
	if err := writeSeedDisks(cfg); err != nil {
		return fmt.Errorf("reload seed disks: %w", err)
	}
	if err := d.sum.Update(unikernels(cfg)); err != nil {
		return fmt.Errorf("reload unikernels: %w", err)
	}
	d.cpu.SetDomains(domainNames(cfg))
	if d.proxy != nil {
		if err := d.proxy.Track(unikernelAddrs(cfg)); err != nil {
			d.log.Warn("metering the new unikernels' traffic", zap.Error(err))
		}
	}
	if err := d.dns.Update(dnsConfig(cfg)); err != nil {
		return fmt.Errorf("reload zones: %w", err)
	}
	d.fd.update(cfg)
	d.cfgMu.Lock()
	d.cfg = cfg
	d.cfgMu.Unlock()
	d.log.Info("config reloaded", zap.String("config", cfg.File),
		zap.Int("zones", len(cfg.Zones)), zap.Int("unikernels", len(cfg.Unikernels)))
	return nil
}

// restartOnly lists the keys that changed but take effect only at the next
// start of jitsu.
func restartOnly(a, b *config.Config) []string {
	var out []string
	if a.Daemon != b.Daemon {
		out = append(out, "daemon")
	}
	if fmt.Sprint(a.DNS.Listen) != fmt.Sprint(b.DNS.Listen) {
		out = append(out, "dns.listen")
	}
	if a.DNS.RRLRate != b.DNS.RRLRate || a.DNS.RRLSlip != b.DNS.RRLSlip || a.DNS.RRLWindow != b.DNS.RRLWindow ||
		a.DNS.Cookies != b.DNS.Cookies || a.DNS.ResponseDelay != b.DNS.ResponseDelay ||
		!bytes.Equal(a.DNS.CookieSecret, b.DNS.CookieSecret) {
		out = append(out, "dns.rrl_*, dns.cookies, dns.cookie_secret_file, dns.response_delay")
	}
	if a.Hypervisor != b.Hypervisor {
		out = append(out, "hypervisor")
	}
	if a.Network != b.Network {
		out = append(out, "network")
	}
	if a.SynProxy != b.SynProxy {
		out = append(out, "synproxy")
	}
	if a.Budget != b.Budget {
		out = append(out, "budget")
	}
	if a.Admission != b.Admission {
		out = append(out, "admission")
	}
	if a.Metrics != b.Metrics {
		out = append(out, "metrics")
	}
	if a.Control != b.Control {
		out = append(out, "control")
	}
	if fmt.Sprint(a.Frontdoor) != fmt.Sprint(b.Frontdoor) {
		out = append(out, "frontdoor (its routes, from the unikernels, are live)")
	}
	return out
}
