package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/control"
	"github.com/jitsu-unikernel/jitsu/dnsserver"
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
	log *zap.Logger
	// sum is set once libvirt is reachable and the summoner runs; until
	// then unikernel names get SERVFAIL and the control socket says so.
	sum atomic.Pointer[summoner.Summoner]
	dns *dnsserver.Server

	reloadMu sync.Mutex // serializes reloads
	cfgMu    sync.Mutex
	cfg      *config.Config
}

// serve runs jitsu until ctx is done. hup delivers reload requests.
func serve(ctx context.Context, cfg *config.Config, log *zap.Logger, hup <-chan os.Signal) error {
	log.Info("jitsu starting", zap.String("version", version), zap.String("config", cfg.File),
		zap.Int("zones", len(cfg.Zones)), zap.Int("unikernels", len(cfg.Unikernels)))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	d := &daemon{log: log, cfg: cfg}

	if err := pinBridgeMAC(cfg.Network.Bridge); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Hypervisor.ConsoleDir, 0o755); err != nil {
		return fmt.Errorf("console dir: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)

	// DNS first: static records are served even while libvirt is not
	// reachable yet; unikernel names get SERVFAIL until it is.
	dns, err := dnsserver.New(dnsConfig(cfg), dnsserver.Options{
		Listen:     cfg.DNS.Listen,
		Summoner:   d,
		Logger:     log.Named("dns"),
		Registerer: reg,
	})
	if err != nil {
		return fmt.Errorf("DNS server: %w", err)
	}
	if err := dns.Start(gctx); err != nil {
		return fmt.Errorf("DNS server: %w", err)
	}
	d.dns = dns
	log.Info("DNS listening", zap.Stringers("addrs", dns.Addrs()))

	var ctl *control.Server
	if cfg.Control.Socket != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.Control.Socket), 0o755); err != nil {
			return errors.Join(fmt.Errorf("control socket dir: %w", err), stopAll(g, dns, nil))
		}
		ctl, err = control.Listen(cfg.Control.Socket, cfg.Control.Mode, d, log.Named("control"))
		if err != nil {
			return errors.Join(fmt.Errorf("control socket: %w", err), stopAll(g, dns, nil))
		}
		g.Go(func() error { return ctl.Serve(gctx) })
	}
	if cfg.Metrics.Listen != "" {
		ws := web.New(web.Options{Registry: reg, Pprof: cfg.Metrics.Pprof, Daemon: d, Logger: log.Named("web")})
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return errors.Join(fmt.Errorf("metrics listen on %s: %w", cfg.Metrics.Listen, err), stopAll(g, dns, ctl))
		}
		log.Info("metrics and status page", zap.String("url", "http://"+ln.Addr().String()+"/"))
		g.Go(func() error { return ws.ServeListener(gctx, ln) })
	}

	hv, err := connectLibvirt(gctx, cfg, log, reg)
	if err != nil {
		if ctx.Err() != nil { // stopped while waiting for libvirt
			return stopAll(g, dns, ctl)
		}
		return errors.Join(err, stopAll(g, dns, ctl))
	}
	defer hv.Close()

	var gate summoner.Gate
	var probeMark uint32
	var proxyRunning <-chan struct{}
	if cfg.SynProxy.Enabled {
		if err := synproxy.Cleanup(cfg.Network.Bridge); err != nil {
			log.Warn("cleaning up a previous run's SYN proxy rules", zap.Error(err))
		}
		proxy, err := synproxy.New(synproxy.Options{
			Bridge:     cfg.Network.Bridge,
			Logger:     log.Named("synproxy"),
			Registerer: reg,
			Limits:     synLimits(cfg),
			BypassMark: synproxy.DefaultBypassMark,
			OnSYN:      d.onSYN,
		})
		if err != nil {
			return errors.Join(fmt.Errorf("SYN proxy: %w", err), stopAll(g, dns, ctl))
		}
		gate = proxy
		proxyRunning = proxy.Running()
		// The readiness probe's SYNs carry the mark the proxy lets through.
		probeMark = synproxy.DefaultBypassMark
		g.Go(func() error {
			if err := proxy.Run(gctx); err != nil && gctx.Err() == nil {
				return fmt.Errorf("SYN proxy: %w", err)
			}
			return nil
		})
	}

	sum, err := summoner.New(summoner.Options{
		Hypervisor:    hv,
		Gate:          gate,
		Logger:        log.Named("summoner"),
		Registerer:    reg,
		MaxRunning:    cfg.Budget.MaxRunning,
		MaxBooting:    cfg.Budget.MaxBooting,
		MemoryBudget:  cfg.Budget.Memory,
		ResponseDelay: responseDelay(cfg),
		ProbeMark:     probeMark,
		StopTimeout:   cfg.Hypervisor.ShutdownTimeout + stopSlack,
	}, unikernels(cfg))
	if err != nil {
		return errors.Join(fmt.Errorf("summoner: %w", err), stopAll(g, dns, ctl))
	}
	g.Go(func() error {
		if err := sum.Run(gctx); err != nil && gctx.Err() == nil {
			return fmt.Errorf("summoner: %w", err)
		}
		return nil
	})
	// Unikernel names are answered once the SYN proxy intercepts (a
	// client's first SYN must find its rules in place) and the summoner
	// has adopted what runs.
	if proxyRunning != nil {
		select {
		case <-proxyRunning:
		case <-gctx.Done():
			return stopAll(g, dns, ctl)
		}
	}
	select {
	case <-sum.Running():
	case <-gctx.Done():
		return stopAll(g, dns, ctl)
	}
	d.sum.Store(sum)

	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				if err := d.Reload(gctx); err != nil {
					log.Error("reload refused, the running config stays", zap.Error(err))
				}
			}
		}
	})
	log.Info("jitsu ready")
	<-gctx.Done()
	return stopAll(g, dns, ctl)
}

// connectLibvirt connects to libvirtd, retrying with backoff (and a log
// line each time) while it is not reachable, until ctx is done.
func connectLibvirt(ctx context.Context, cfg *config.Config, log *zap.Logger, reg prometheus.Registerer) (*hvlibvirt.Hypervisor, error) {
	wait := 100 * time.Millisecond
	for {
		hv, err := hvlibvirt.New(ctx, hvlibvirt.Options{
			URI:             cfg.Hypervisor.URI,
			Logger:          log.Named("hypervisor"),
			ConsoleDir:      cfg.Hypervisor.ConsoleDir,
			ShutdownTimeout: cfg.Hypervisor.ShutdownTimeout,
			Registerer:      reg,
		})
		if err == nil {
			return hv, nil
		}
		log.Warn("libvirt not reachable; unikernel names get SERVFAIL until it is",
			zap.String("uri", cfg.Hypervisor.URI), zap.Duration("retry_in", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to libvirt at %s: %w", cfg.Hypervisor.URI, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// errNotConnected answers for unikernels until the summoner runs.
var errNotConnected = errors.New("libvirt not connected yet")

// summoner returns the running summoner, or errNotConnected.
func (d *daemon) summoner() (*summoner.Summoner, error) {
	if s := d.sum.Load(); s != nil {
		return s, nil
	}
	return nil, errNotConnected
}

// Summon implements dnsserver.Summoner: the summoner's, once it runs.
func (d *daemon) Summon(ctx context.Context, name string) ([]netip.Addr, error) {
	s := d.sum.Load()
	if s == nil {
		return nil, errNotConnected
	}
	return s.Summon(ctx, name)
}

// stopAll closes the servers and waits for every goroutine of g; it returns
// the first real error.
func stopAll(g *errgroup.Group, dns *dnsserver.Server, ctl *control.Server) error {
	var errs []error
	if dns != nil {
		errs = append(errs, dns.Close())
	}
	if ctl != nil {
		errs = append(errs, ctl.Close())
	}
	errs = append(errs, g.Wait())
	return errors.Join(errs...)
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

// onSYN is called by the SYN proxy for each SYN held for addr: the
// summoner counts it as activity and summons its unikernel if tcp is one of
// its triggers.
func (d *daemon) onSYN(addr netip.Addr) {
	if s := d.sum.Load(); s != nil {
		s.OnPacket(addr, summoner.ProtoTCP)
	}
}

// Status implements control.Daemon.
func (d *daemon) Status(context.Context) ([]control.UnikernelStatus, error) {
	sum, err := d.summoner()
	if err != nil {
		return nil, err
	}
	sts := sum.Status()
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
		if !s.LastBoot.Start.IsZero() {
			us.LastBoot = &control.BootTimeline{Query: s.LastBoot.Query, Trigger: string(s.LastBoot.Trigger),
				Start: s.LastBoot.Start, Ready: s.LastBoot.Ready, FirstReplay: s.LastBoot.FirstReplay}
		}
		out = append(out, us)
	}
	return out, nil
}

// Start implements control.Daemon.
func (d *daemon) Start(ctx context.Context, name string) error {
	sum, err := d.summoner()
	if err != nil {
		return err
	}
	return controlErr(sum.Start(ctx, name))
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
	sum, err := d.summoner()
	if err != nil {
		return err
	}
	return controlErr(sum.Stop(ctx, name, m))
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
	sum, err := d.summoner()
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if err := sum.Update(unikernels(cfg)); err != nil {
		return fmt.Errorf("reload unikernels: %w", err)
	}
	if err := d.dns.Update(dnsConfig(cfg)); err != nil {
		return fmt.Errorf("reload zones: %w", err)
	}
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
	if fmt.Sprint(a.DNS.Listen) != fmt.Sprint(b.DNS.Listen) {
		out = append(out, "dns.listen")
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
	if a.Metrics != b.Metrics {
		out = append(out, "metrics")
	}
	if a.Control != b.Control {
		out = append(out, "control")
	}
	return out
}
