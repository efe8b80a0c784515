// Package libvirt implements hypervisor.Hypervisor over libvirt
// (libvirt.org/go/libvirt and libvirt.org/go/libvirtxml).
//
// Every domain it creates carries a jitsu metadata element (namespace
// MetadataNamespace); domains without it are foreign and never listed,
// stopped or changed. Domains are created transient; a Stop with
// hypervisor.StopSave first makes the running domain persistent, because
// libvirt's managed save needs a persistent domain, and the next Start
// restores from the managed save image.
//
// Lifecycle events come from libvirt's default event loop, run on one shared
// goroutine while at least one Hypervisor is open. The connection is kept
// alive with libvirt keepalives; when it closes (libvirtd restarted), the
// backend reconnects in the background with exponential backoff, and calls
// made meanwhile fail with an error wrapping hypervisor.ErrUnavailable.
package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	lv "libvirt.org/go/libvirt"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// Options configure a Hypervisor. URI and ShutdownTimeout are required
// (the user-facing defaults belong to package config).
type Options struct {
	// URI is the libvirt connection URI, e.g. "qemu:///system". Use
	// "test:///default" for libvirt's in-process test driver.
	URI string
	// Logger receives connection and event logs; nil means none.
	Logger *zap.Logger
	// ConsoleDir holds one console log per domain, <name>.log, truncated at
	// each boot. QEMU (user libvirt-qemu) must be able to traverse it.
	// Spec.ConsoleLog overrides it per domain; a Spec without ConsoleLog
	// cannot start when ConsoleDir is empty.
	ConsoleDir string
	// ShutdownTimeout is how long StopShutdown waits for the guest to power
	// off before destroying it. Required.
	ShutdownTimeout time.Duration
	// Instance is the id of the jitsu daemon using this backend: written
	// into the metadata of every domain it creates. Domains whose metadata
	// names another instance (or none, when Instance is set) are foreign:
	// never listed, started, stopped or reported.
	Instance string
	// Machine is the QEMU machine type (e.g. "pc", "q35"); "" means
	// libvirt's default.
	Machine string
	// Persistent defines domains persistently before starting them
	// (define + create) instead of creating them transient.
	Persistent bool
	// KeepAliveInterval and KeepAliveCount turn on libvirt client
	// keepalives (remote connections only); 0 leaves them off, the
	// default: when a keepalive timeout closes a connection with several
	// calls waiting on it (a libvirtd stopped for longer than
	// interval × count), libvirt's client wakes the waiting calls on freed
	// memory and the process crashes once libvirtd answers again (libvirt
	// 9.x; reproduced with ListAllDomains alone). Without them, a hung
	// call only outlives its deadline, and a libvirtd that exits closes
	// the socket, which the close callback reports.
	KeepAliveInterval time.Duration
	KeepAliveCount    uint
	// ReconnectMin and ReconnectMax bound the reconnect backoff; 0 means
	// 100 ms and 5 s.
	ReconnectMin, ReconnectMax time.Duration
	// Registerer registers the backend's metrics; nil means none.
	Registerer prometheus.Registerer
}

// check validates the required options and fills in the internal tunables.
func (o *Options) check() error {
	if o.URI == "" {
		return errors.New("libvirt backend: no connection URI")
	}
	if o.ShutdownTimeout <= 0 {
		return fmt.Errorf("libvirt backend: shutdown timeout %v: must be positive", o.ShutdownTimeout)
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.KeepAliveInterval > 0 && o.KeepAliveCount == 0 {
		o.KeepAliveCount = 3
	}
	if o.ReconnectMin <= 0 {
		o.ReconnectMin = 100 * time.Millisecond
	}
	if o.ReconnectMax <= 0 {
		o.ReconnectMax = 5 * time.Second
	}
	return nil
}

// domInfo is what the backend remembers about one of jitsu's domains.
type domInfo struct {
	mac     net.HardwareAddr
	started time.Time
	// suspended is set by a reported SUSPENDED event: only then is a
	// RESUMED event reported. QEMU starts (and restores) with its vCPUs
	// paused, and libvirt reports their first resume, which is not the
	// resume of a suspended guest.
	suspended bool
	// saving is set during a managed save: libvirt pauses the vCPUs
	// first (SUSPENDED before STOPPED/SAVED), which is not a suspend.
	saving bool
	// stopsPending counts Stops jitsu requested whose STOPPED event has not
	// arrived yet: a stop jitsu did not ask for is a crash.
	stopsPending int
}

// Hypervisor is the libvirt backend. It implements hypervisor.Hypervisor and
// hypervisor.StatsReader.
type Hypervisor struct {
	opts Options
	log  *zap.Logger
	m    *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	conn        *lv.Connect // nil while disconnected
	lifecycleID int
	known       map[string]*domInfo
	mdCache     map[string]mdEntry // List's metadata of running domains, by name
	locks       map[string]chan struct{}

	reconnect chan struct{}
	calls     chan struct{}  // a slot per libvirt call in flight
	inflight  sync.WaitGroup // the calls' goroutines
	// connected is closed at the first connection; everConnected (owned
	// by New, then by reconnectLoop) says whether it is.
	connected     chan struct{}
	everConnected bool
	queue         *eventQueue
	events        chan hypervisor.Event
	closeOnce     sync.Once
}

var (
	_ hypervisor.Hypervisor  = (*Hypervisor)(nil)
	_ hypervisor.StatsReader = (*Hypervisor)(nil)
)

// New connects to libvirt at opts.URI and starts the event goroutines. It
// fails if the first connection fails; later outages are survived.
func New(ctx context.Context, opts Options) (*Hypervisor, error) {
	h, err := newHypervisor(opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		h.abort()
		return nil, err
	}
	if err := h.connect(); err != nil {
		h.abort()
		return nil, err
	}
	h.adopt()
	close(h.connected)
	h.everConnected = true
	h.wg.Add(2)
	go h.reconnectLoop()
	go h.dispatch()
	return h, nil
}

// Open returns at once and connects to libvirt at opts.URI in the
// background, retrying with the reconnect backoff for as long as it takes:
// until the first connection (see Connected), every call fails with an
// error wrapping hypervisor.ErrUnavailable. Each connection, the first
// included, is reported by an event of kind hypervisor.EventReconnected.
func Open(opts Options) (*Hypervisor, error) {
	h, err := newHypervisor(opts)
	if err != nil {
		return nil, err
	}
	h.wg.Add(2)
	go h.reconnectLoop()
	go h.dispatch()
	h.kickReconnect()
	return h, nil
}

// newHypervisor checks opts and builds a disconnected backend.
func newHypervisor(opts Options) (*Hypervisor, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	if err := loop.acquire(); err != nil {
		return nil, err
	}
	hctx, cancel := context.WithCancel(context.Background())
	return &Hypervisor{
		opts:      opts,
		log:       opts.Logger.With(zap.String("uri", opts.URI)),
		m:         m,
		ctx:       hctx,
		cancel:    cancel,
		known:     map[string]*domInfo{},
		mdCache:   map[string]mdEntry{},
		locks:     map[string]chan struct{}{},
		reconnect: make(chan struct{}, 1),
		calls:     make(chan struct{}, maxCalls),
		connected: make(chan struct{}),
		queue:     newEventQueue(4096),
		events:    make(chan hypervisor.Event, 64),
	}, nil
}

// abort undoes newHypervisor for a New that failed.
func (h *Hypervisor) abort() {
	h.cancel()
	loop.release()
}

// Connected is closed once the backend has connected to libvirt the first
// time.
func (h *Hypervisor) Connected() <-chan struct{} { return h.connected }

// connect opens the connection, registers callbacks and keepalives, and
// publishes it.
func (h *Hypervisor) connect() error {
	conn, err := lv.NewConnect(h.opts.URI)
	if err != nil {
		return fmt.Errorf("connect to libvirt %s: %w: %w", h.opts.URI, hypervisor.ErrUnavailable, err)
	}
	id, err := conn.DomainEventLifecycleRegister(nil, h.onLifecycle)
	if err != nil {
		_, _ = conn.Close()
		return fmt.Errorf("register lifecycle events on %s: %w", h.opts.URI, err)
	}
	if err := conn.RegisterCloseCallback(h.onClose); err != nil {
		h.log.Debug("no close callback on this connection", zap.Error(err))
	}
	if h.opts.KeepAliveInterval > 0 {
		if err := conn.SetKeepAlive(max(1, int(h.opts.KeepAliveInterval/time.Second)), h.opts.KeepAliveCount); err != nil {
			// The in-process drivers (test://) have no keepalive.
			h.log.Debug("no keepalive on this connection", zap.Error(err))
		}
	}
	h.mu.Lock()
	h.conn, h.lifecycleID = conn, id
	h.mu.Unlock()
	return nil
}

// disconnect unpublishes and closes the current connection.
func (h *Hypervisor) disconnect() {
	h.mu.Lock()
	conn, id := h.conn, h.lifecycleID
	h.conn = nil
	h.mu.Unlock()
	if conn == nil {
		return
	}
	_ = conn.DomainEventDeregister(id)
	_ = conn.UnregisterCloseCallback()
	_, _ = conn.Close()
}

// onClose runs on the event loop when libvirt closes the connection.
func (h *Hypervisor) onClose(_ *lv.Connect, reason lv.ConnectCloseReason) {
	h.log.Warn("libvirt connection closed", zap.Int("reason", int(reason)))
	h.kickReconnect()
}

func (h *Hypervisor) kickReconnect() {
	select {
	case h.reconnect <- struct{}{}:
	default:
	}
}

// reconnectLoop re-establishes a lost connection with exponential backoff.
func (h *Hypervisor) reconnectLoop() {
	defer h.wg.Done()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.reconnect:
		}
		if h.alive() {
			continue
		}
		lost := time.Now()
		if h.everConnected {
			h.log.Warn("libvirt connection lost, reconnecting")
		}
		h.disconnect()
		if !h.connectWithBackoff(lost) {
			return
		}
	}
}

// connectWithBackoff connects, retrying with exponential backoff until it
// succeeds (true) or the backend is closed (false); then it adopts the
// existing domains and reports EventReconnected.
func (h *Hypervisor) connectWithBackoff(lost time.Time) bool {
	backoff := h.opts.ReconnectMin
	for attempt := 1; ; attempt++ {
		err := h.connect()
		if err == nil {
			if h.everConnected {
				h.m.reconnects.Inc()
				h.log.Info("reconnected to libvirt", zap.Int("attempts", attempt), zap.Duration("outage", time.Since(lost)))
			} else {
				h.log.Info("connected to libvirt", zap.Int("attempts", attempt), zap.Duration("waited", time.Since(lost)))
			}
			h.adopt()
			if !h.everConnected {
				h.everConnected = true
				close(h.connected)
			}
			h.queue.push(rawEvent{ev: hypervisor.Event{Kind: hypervisor.EventReconnected, Time: time.Now()}, known: true})
			return true
		}
		if attempt == 1 {
			h.log.Warn("libvirt not reachable; retrying in the background", zap.Error(err))
		}
		h.log.Debug("connect failed", zap.Int("attempt", attempt), zap.Duration("retry_in", backoff), zap.Error(err))
		select {
		case <-h.ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, h.opts.ReconnectMax)
	}
}

// alive reports whether the current connection is usable.
func (h *Hypervisor) alive() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn == nil {
		return false
	}
	ok, err := h.conn.IsAlive()
	return err == nil && ok
}

// acquire returns a referenced connection the caller must release with
// release(conn), or an error wrapping ErrUnavailable.
func (h *Hypervisor) acquire() (*lv.Connect, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ctx.Err() != nil {
		return nil, fmt.Errorf("hypervisor closed: %w", hypervisor.ErrUnavailable)
	}
	if h.conn == nil {
		return nil, fmt.Errorf("libvirt %s not connected: %w", h.opts.URI, hypervisor.ErrUnavailable)
	}
	if err := h.conn.Ref(); err != nil {
		return nil, fmt.Errorf("reference libvirt connection: %w: %w", hypervisor.ErrUnavailable, err)
	}
	return h.conn, nil
}

func release(conn *lv.Connect) { _, _ = conn.Close() }

// lockName serialises operations on one domain name.
func (h *Hypervisor) lockName(ctx context.Context, name string) (func(), error) {
	h.mu.Lock()
	l, ok := h.locks[name]
	if !ok {
		l = make(chan struct{}, 1)
		h.locks[name] = l
	}
	h.mu.Unlock()
	select {
	case l <- struct{}{}:
		return func() { <-l }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// libvirtErr classifies a libvirt error as one of hypervisor's typed errors,
// or nil if it is none of them.
func (h *Hypervisor) libvirtErr(err error) error {
	var le lv.Error
	if !errors.As(err, &le) {
		return nil
	}
	switch le.Code {
	case lv.ERR_NO_DOMAIN:
		return hypervisor.ErrNotFound
	case lv.ERR_DOM_EXIST:
		return hypervisor.ErrAlreadyRunning
	case lv.ERR_NO_CONNECT, lv.ERR_INVALID_CONN:
		h.kickReconnect()
		return hypervisor.ErrUnavailable
	case lv.ERR_RPC, lv.ERR_SYSTEM_ERROR, lv.ERR_INTERNAL_ERROR:
		// Also what libvirtd reports when *it* fails to reach virtlogd:
		// only a dead connection to libvirtd means unavailable.
		if !h.alive() {
			h.kickReconnect()
			return hypervisor.ErrUnavailable
		}
	}
	return nil
}

// wrap wraps err from libvirt with what was being done, adding the typed
// error it stands for.
func (h *Hypervisor) wrap(op, name string, err error) error {
	if err == nil {
		return nil
	}
	if typed := h.libvirtErr(err); typed != nil {
		return fmt.Errorf("%s %q: %w: %w", op, name, typed, err)
	}
	return fmt.Errorf("%s %q: %w", op, name, err)
}

// openDomain serializes op with the other operations on domain name, takes
// a connection, looks the domain up (jitsu's only) and reads its state; done
// frees the domain, releases the connection and unlocks the name.
func (h *Hypervisor) openDomain(ctx context.Context, op, name string) (conn *lv.Connect, d *lv.Domain, st lv.DomainState, done func(), err error) {
	unlock, err := h.lockName(ctx, name)
	if err != nil {
		return nil, nil, 0, nil, fmt.Errorf("%s %q: %w", op, name, err)
	}
	conn, err = h.acquire()
	if err != nil {
		unlock()
		return nil, nil, 0, nil, fmt.Errorf("%s %q: %w", op, name, err)
	}
	d, _, err = h.lookup(conn, op, name)
	if err != nil {
		release(conn)
		unlock()
		return nil, nil, 0, nil, err
	}
	done = func() {
		_ = d.Free()
		release(conn)
		unlock()
	}
	st, _, err = d.GetState()
	if err != nil {
		done()
		return nil, nil, 0, nil, h.wrap("get state of", name, err)
	}
	return conn, d, st, done, nil
}

// lookup finds one of jitsu's domains by name. The caller frees it.
func (h *Hypervisor) lookup(conn *lv.Connect, op, name string) (*lv.Domain, metadata, error) {
	d, err := conn.LookupDomainByName(name)
	if err != nil {
		return nil, metadata{}, h.wrap(op, name, err)
	}
	md, err := h.jitsuMetadata(d)
	if err != nil {
		_ = d.Free()
		return nil, metadata{}, fmt.Errorf("%s %q: %w", op, name, err)
	}
	h.remember(name, md)
	return d, md, nil
}

// jitsuMetadata returns d's jitsu metadata, or an error wrapping ErrForeign.
func (h *Hypervisor) jitsuMetadata(d *lv.Domain) (metadata, error) {
	s, err := d.GetMetadata(lv.DOMAIN_METADATA_ELEMENT, MetadataNamespace, lv.DOMAIN_AFFECT_CURRENT)
	if err != nil {
		var le lv.Error
		if errors.As(err, &le) && le.Code == lv.ERR_NO_DOMAIN_METADATA {
			return metadata{}, hypervisor.ErrForeign
		}
		return metadata{}, h.wrap("read metadata of", "", err)
	}
	md, err := parseMetadata(s)
	if err != nil {
		return md, err
	}
	if md.Instance != h.opts.Instance {
		return metadata{}, fmt.Errorf("domain of jitsu instance %q, not %q: %w", md.Instance, h.opts.Instance, hypervisor.ErrForeign)
	}
	return md, nil
}

func (h *Hypervisor) remember(name string, md metadata) *domInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	info, ok := h.known[name]
	if !ok {
		info = &domInfo{}
		h.known[name] = info
	}
	if mac, err := net.ParseMAC(md.MAC); err == nil {
		info.mac = mac
	}
	return info
}

// adopt learns the jitsu domains that already exist, e.g. after a restart
// of jitsu or of libvirtd, so that their events are recognised.
func (h *Hypervisor) adopt() {
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	doms, err := h.List(ctx)
	if err != nil {
		h.log.Warn("list existing domains", zap.Error(err))
		return
	}
	for _, d := range doms {
		h.log.Info("adopted domain", zap.String("domain", d.Name), zap.Stringer("state", d.State))
	}
}

// consolePath is where the serial console of spec is logged.
func (h *Hypervisor) consolePath(spec hypervisor.Spec) string {
	if spec.ConsoleLog != "" || h.opts.ConsoleDir == "" {
		return spec.ConsoleLog
	}
	return filepath.Join(h.opts.ConsoleDir, spec.Name+".log")
}

// ConsolePath returns the console log file of the domain called name when
// its Spec leaves ConsoleLog empty.
func (h *Hypervisor) ConsolePath(name string) string {
	return h.consolePath(hypervisor.Spec{Name: name})
}

// ConsoleMode is the permission of console logs: a guest's console may
// print secrets, so no other user reads it (the group may: give the
// console directory an operators' group, set-group-ID, to share them).
const ConsoleMode = 0o640

// prepareConsole creates (or truncates) the console log, mode ConsoleMode,
// so that readers can open it as soon as Start returns; QEMU (or virtlogd)
// truncates it again on open.
func prepareConsole(path string) error {
	if path == "" {
		return errors.New("no console log: set the spec's ConsoleLog or the backend's ConsoleDir")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create console dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, ConsoleMode)
	if err != nil {
		return fmt.Errorf("create console log: %w", err)
	}
	err = f.Chmod(ConsoleMode) // whatever the umask, or an older file's mode
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create console log: %w", err)
	}
	return nil
}

// settleConsole sets the console log's mode to ConsoleMode once the domain
// started: virtlogd (libvirt's default stdio handler) may have created the
// file anew with its own mode.
func (h *Hypervisor) settleConsole(path string) {
	if path == "" {
		return
	}
	if err := os.Chmod(path, ConsoleMode); err != nil && !errors.Is(err, os.ErrNotExist) {
		h.log.Warn("setting the console log's mode", zap.String("path", path), zap.Error(err))
	}
}

// Start boots spec, restores it from its managed save image, or resumes it
// if paused. See hypervisor.Hypervisor.
func (h *Hypervisor) Start(ctx context.Context, spec hypervisor.Spec) (err error) {
	t0 := time.Now()
	defer func() { h.m.observeStart(t0, err) }()
	return h.call(ctx, "start", spec.Name, func() error { return h.start(ctx, spec, false) })
}

// Prepare creates spec's domain paused before its guest runs
// (VIR_DOMAIN_START_PAUSED): a warm domain. See hypervisor.Hypervisor.
func (h *Hypervisor) Prepare(ctx context.Context, spec hypervisor.Spec) (err error) {
	return h.call(ctx, "prepare", spec.Name, func() error { return h.start(ctx, spec, true) })
}

// start is Start (Prepare when paused) without its deadline.
func (h *Hypervisor) start(ctx context.Context, spec hypervisor.Spec, paused bool) error {
	var flags lv.DomainCreateFlags
	verb := "started"
	if paused {
		flags, verb = lv.DOMAIN_START_PAUSED, "prepared paused"
	}
	t0 := time.Now()
	unlock, err := h.lockName(ctx, spec.Name)
	if err != nil {
		return fmt.Errorf("start %q: %w", spec.Name, err)
	}
	defer unlock()
	conn, err := h.acquire()
	if err != nil {
		return fmt.Errorf("start %q: %w", spec.Name, err)
	}
	defer release(conn)

	d, _, err := h.lookup(conn, "start", spec.Name)
	switch {
	case err == nil:
		defer func() { _ = d.Free() }()
		return h.startExisting(d, spec, flags)
	case !errors.Is(err, hypervisor.ErrNotFound):
		return err
	}
	domXML, err := domainXML(spec, h.opts.Instance, "", h.consolePath(spec), h.opts.Machine)
	if err != nil {
		return fmt.Errorf("start %q: %w", spec.Name, err)
	}
	if err := prepareConsole(h.consolePath(spec)); err != nil {
		return fmt.Errorf("start %q: %w", spec.Name, err)
	}
	h.remember(spec.Name, metadata{Name: spec.Name, MAC: spec.NIC().String(), Instance: h.opts.Instance})
	if h.opts.Persistent {
		d, err := conn.DomainDefineXML(domXML)
		if err != nil {
			return h.wrap("define", spec.Name, err)
		}
		defer func() { _ = d.Free() }()
		if err := h.create(spec.Name, flags, existing(d)); err != nil {
			return h.wrap("start", spec.Name, err)
		}
	} else {
		err := h.create(spec.Name, flags, func(f lv.DomainCreateFlags) (*lv.Domain, func(), error) {
			d, err := conn.DomainCreateXML(domXML, f)
			if err != nil {
				return nil, nil, err
			}
			return d, func() { _ = d.Free() }, nil
		})
		if err != nil {
			return h.wrap("start", spec.Name, err)
		}
	}
	h.settleConsole(h.consolePath(spec))
	h.log.Info("domain "+verb, zap.String("domain", spec.Name), zap.Duration("took", time.Since(t0)))
	return nil
}

// createFunc creates (starts) a domain with flags; it returns the domain
// and what frees it.
type createFunc func(lv.DomainCreateFlags) (*lv.Domain, func(), error)

// existing is the createFunc of a domain libvirt knows.
func existing(d *lv.Domain) createFunc {
	return func(f lv.DomainCreateFlags) (*lv.Domain, func(), error) {
		return d, func() {}, d.CreateWithFlags(f)
	}
}

// create runs create with flags. A driver that refuses the start-paused
// flag (libvirt's test driver) gets a plain create followed at once by a
// suspend: the guest may have run a few instructions.
func (h *Hypervisor) create(name string, flags lv.DomainCreateFlags, create createFunc) error {
	d, free, err := create(flags)
	var le lv.Error
	if err != nil && flags&lv.DOMAIN_START_PAUSED != 0 && errors.As(err, &le) && le.Code == lv.ERR_INVALID_ARG {
		h.log.Info("the driver cannot start paused; creating and suspending", zap.String("domain", name), zap.Error(err))
		d, free, err = create(flags &^ lv.DOMAIN_START_PAUSED)
		if err == nil {
			defer free()
			if err := d.Suspend(); err != nil {
				return fmt.Errorf("suspend after create: %w", err)
			}
			return nil
		}
	}
	if err != nil {
		return err
	}
	free()
	return nil
}

// startExisting starts a domain that libvirt already knows.
// With DOMAIN_START_PAUSED in flags (Prepare), a paused domain is not
// resumed (ErrAlreadyRunning) and a new one is left paused.
func (h *Hypervisor) startExisting(d *lv.Domain, spec hypervisor.Spec, flags lv.DomainCreateFlags) error {
	st, _, err := d.GetState()
	if err != nil {
		return h.wrap("get state of", spec.Name, err)
	}
	switch st {
	case lv.DOMAIN_RUNNING, lv.DOMAIN_BLOCKED, lv.DOMAIN_SHUTDOWN:
		return fmt.Errorf("start %q: %w", spec.Name, hypervisor.ErrAlreadyRunning)
	case lv.DOMAIN_PAUSED, lv.DOMAIN_PMSUSPENDED:
		if flags&lv.DOMAIN_START_PAUSED != 0 {
			return fmt.Errorf("prepare %q: %w", spec.Name, hypervisor.ErrAlreadyRunning)
		}
		h.markSuspended(spec.Name)
		if err := d.Resume(); err != nil {
			return h.wrap("resume", spec.Name, err)
		}
		h.log.Info("domain resumed", zap.String("domain", spec.Name))
		return nil
	}
	saved, err := d.HasManagedSaveImage(0)
	if err != nil {
		return h.wrap("check managed save of", spec.Name, err)
	}
	if saved {
		// The restored domain keeps the configuration it was saved with.
		if err := prepareConsole(h.consolePath(spec)); err != nil {
			return fmt.Errorf("start %q: %w", spec.Name, err)
		}
		if err := h.create(spec.Name, flags, existing(d)); err != nil {
			return h.wrap("restore", spec.Name, err)
		}
		h.settleConsole(h.consolePath(spec))
		h.log.Info("domain restored from managed save", zap.String("domain", spec.Name))
		return nil
	}
	// Defined but shut off: boot it with the current spec, keeping its UUID.
	uuid, err := d.GetUUIDString()
	if err != nil {
		return h.wrap("get UUID of", spec.Name, err)
	}
	domXML, err := domainXML(spec, h.opts.Instance, uuid, h.consolePath(spec), h.opts.Machine)
	if err != nil {
		return fmt.Errorf("start %q: %w", spec.Name, err)
	}
	if err := prepareConsole(h.consolePath(spec)); err != nil {
		return fmt.Errorf("start %q: %w", spec.Name, err)
	}
	conn, err := d.DomainGetConnect()
	if err != nil {
		return h.wrap("start", spec.Name, err)
	}
	nd, err := conn.DomainDefineXML(domXML)
	if err != nil {
		return h.wrap("redefine", spec.Name, err)
	}
	defer func() { _ = nd.Free() }()
	if err := h.create(spec.Name, flags, existing(nd)); err != nil {
		return h.wrap("start", spec.Name, err)
	}
	h.log.Info("domain started", zap.String("domain", spec.Name))
	return nil
}

// Stop stops a running or paused domain with mode. See
// hypervisor.Hypervisor.
func (h *Hypervisor) Stop(ctx context.Context, name string, mode hypervisor.StopMode) error {
	return h.call(ctx, "stop", name, func() error { return h.stop(ctx, name, mode) })
}

// stop is Stop without its deadline.
func (h *Hypervisor) stop(ctx context.Context, name string, mode hypervisor.StopMode) error {
	if _, err := hypervisor.ParseStopMode(string(mode)); err != nil {
		return fmt.Errorf("stop %q: %w", name, err)
	}
	conn, d, st, done, err := h.openDomain(ctx, "stop", name)
	if err != nil {
		return err
	}
	defer done()
	paused := st == lv.DOMAIN_PAUSED || st == lv.DOMAIN_PMSUSPENDED
	if st != lv.DOMAIN_RUNNING && st != lv.DOMAIN_BLOCKED && st != lv.DOMAIN_SHUTDOWN && !paused {
		return fmt.Errorf("stop %q: %w", name, hypervisor.ErrNotRunning)
	}
	switch mode {
	case hypervisor.StopSuspend:
		if paused {
			return nil
		}
		if err := d.Suspend(); err != nil {
			return h.wrap("suspend", name, err)
		}
	case hypervisor.StopDestroy:
		err = h.stopping(name, d.Destroy)
		if err != nil {
			return h.wrap("destroy", name, err)
		}
	case hypervisor.StopShutdown:
		if paused {
			// A paused guest cannot answer ACPI.
			if err := h.stopping(name, d.Destroy); err != nil {
				return h.wrap("destroy paused", name, err)
			}
			break
		}
		if err := h.shutdown(ctx, d, name); err != nil {
			return err
		}
	case hypervisor.StopSave:
		if err := h.save(conn, d, name); err != nil {
			return err
		}
	}
	h.log.Info("domain stopped", zap.String("domain", name), zap.String("mode", string(mode)))
	return nil
}

// markSuspended records that name is paused (perhaps since before jitsu
// knew it), so that its RESUMED event is reported.
func (h *Hypervisor) markSuspended(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if info := h.known[name]; info != nil {
		info.suspended = true
	}
}

// setSaving marks name as being saved, until its STOPPED event.
func (h *Hypervisor) setSaving(name string, on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if info := h.known[name]; info != nil {
		info.saving = on
	}
}

// stopping runs op, a stop jitsu requested, so that the STOPPED event it
// causes is not taken for a crash.
func (h *Hypervisor) stopping(name string, op func() error) error {
	h.mu.Lock()
	info := h.known[name]
	if info == nil {
		info = &domInfo{}
		h.known[name] = info
	}
	info.stopsPending++
	h.mu.Unlock()
	err := op()
	if err != nil {
		h.mu.Lock()
		if info.stopsPending > 0 {
			info.stopsPending--
		}
		h.mu.Unlock()
	}
	return err
}

// shutdown asks the guest to power off and destroys it after the timeout,
// or at once when ctx ends: either way the domain is stopped on return.
func (h *Hypervisor) shutdown(ctx context.Context, d *lv.Domain, name string) error {
	err := h.stopping(name, func() error { return d.Shutdown() })
	if err != nil {
		return h.wrap("shut down", name, err)
	}
	deadline := time.NewTimer(h.opts.ShutdownTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		active, err := d.IsActive()
		if err != nil {
			if errors.Is(h.libvirtErr(err), hypervisor.ErrNotFound) {
				return nil // transient domain gone
			}
			return h.wrap("wait for shutdown of", name, err)
		}
		if !active {
			return nil
		}
		select {
		case <-tick.C:
			continue
		case <-ctx.Done():
		case <-deadline.C:
		}
		break
	}
	h.log.Info("guest did not power off, destroying", zap.String("domain", name), zap.Duration("timeout", h.opts.ShutdownTimeout))
	// The pending STOPPED event of the shutdown request is still expected:
	// the destroy's STOPPED event consumes it.
	if err := d.Destroy(); err != nil {
		if active, aerr := d.IsActive(); aerr == nil && !active {
			return nil // powered off in the meantime
		}
		if errors.Is(h.libvirtErr(err), hypervisor.ErrNotFound) {
			return nil
		}
		return h.wrap("destroy after shutdown timeout", name, err)
	}
	return nil
}

// save managed-saves the domain, making it persistent first if needed.
func (h *Hypervisor) save(conn *lv.Connect, d *lv.Domain, name string) error {
	persistent, err := d.IsPersistent()
	if err != nil {
		return h.wrap("check persistence of", name, err)
	}
	if !persistent {
		x, err := d.GetXMLDesc(lv.DOMAIN_XML_INACTIVE | lv.DOMAIN_XML_SECURE)
		if err != nil {
			return h.wrap("get XML of", name, err)
		}
		nd, err := conn.DomainDefineXML(x)
		if err != nil {
			return h.wrap("make persistent", name, err)
		}
		_ = nd.Free()
	}
	h.setSaving(name, true)
	if err := h.stopping(name, func() error { return d.ManagedSave(lv.DOMAIN_SAVE_RUNNING) }); err != nil {
		h.setSaving(name, false)
		return h.wrap("managed save", name, err)
	}
	return nil
}

// DiscardSave removes the domain's managed save image, if it has one
// (virDomainManagedSaveRemove), so that its next Start boots afresh with the
// current spec. See hypervisor.Hypervisor.
func (h *Hypervisor) DiscardSave(ctx context.Context, name string) error {
	_, d, _, done, err := h.openDomain(ctx, "discard managed save of", name)
	if err != nil {
		return err
	}
	defer done()
	saved, err := d.HasManagedSaveImage(0)
	if err != nil {
		return h.wrap("check managed save of", name, err)
	}
	if !saved {
		return nil
	}
	if err := d.ManagedSaveRemove(0); err != nil {
		return h.wrap("discard managed save of", name, err)
	}
	h.log.Info("managed save image discarded", zap.String("domain", name))
	return nil
}

// Resume continues a paused domain; any other state gives ErrNotRunning.
func (h *Hypervisor) Resume(ctx context.Context, name string) error {
	return h.call(ctx, "resume", name, func() error { return h.resume(ctx, name) })
}

// resume is Resume without its deadline.
func (h *Hypervisor) resume(ctx context.Context, name string) error {
	_, d, st, done, err := h.openDomain(ctx, "resume", name)
	if err != nil {
		return err
	}
	defer done()
	switch st {
	case lv.DOMAIN_PAUSED, lv.DOMAIN_PMSUSPENDED:
		h.markSuspended(name)
		if err := d.Resume(); err != nil {
			return h.wrap("resume", name, err)
		}
		return nil
	}
	// Like the fake: only a paused domain can be resumed.
	return fmt.Errorf("resume %q: %w", name, hypervisor.ErrNotRunning)
}

// SetGuestTime sets the guest's clock to the host's current time through
// jitsu's agent channel (see agent.go), under ctx's deadline. See
// hypervisor.Hypervisor.
func (h *Hypervisor) SetGuestTime(ctx context.Context, name string) error {
	path, err := h.agentPath(ctx, name)
	if err != nil {
		return err
	}
	if err := setGuestTimeAt(ctx, path, time.Now); err != nil {
		return fmt.Errorf("set guest time of %q: %w", name, err)
	}
	return nil
}

// domainState maps libvirt's state to hypervisor.State.
func domainState(d *lv.Domain) (hypervisor.State, error) {
	st, reason, err := d.GetState()
	if err != nil {
		return hypervisor.StateUnknown, err
	}
	return stateFrom(d, st, reason)
}

// stateFrom maps libvirt's state st and reason of d to hypervisor.State
// (a shut-off domain's save image is looked for).
func stateFrom(d *lv.Domain, st lv.DomainState, reason int) (hypervisor.State, error) {
	switch st {
	case lv.DOMAIN_RUNNING, lv.DOMAIN_BLOCKED, lv.DOMAIN_SHUTDOWN:
		return hypervisor.StateRunning, nil
	case lv.DOMAIN_PAUSED, lv.DOMAIN_PMSUSPENDED:
		return hypervisor.StatePaused, nil
	case lv.DOMAIN_CRASHED:
		return hypervisor.StateCrashed, nil
	case lv.DOMAIN_SHUTOFF:
		saved, err := d.HasManagedSaveImage(0)
		if err != nil {
			return hypervisor.StateUnknown, err
		}
		if saved {
			return hypervisor.StateSaved, nil
		}
		if lv.DomainShutoffReason(reason) == lv.DOMAIN_SHUTOFF_CRASHED {
			return hypervisor.StateCrashed, nil
		}
		return hypervisor.StateShutoff, nil
	}
	return hypervisor.StateUnknown, nil
}

// State reports a domain's state. See hypervisor.Hypervisor.
func (h *Hypervisor) State(ctx context.Context, name string) (hypervisor.State, error) {
	return callValue(h, ctx, "state of", name, func() (hypervisor.State, error) { return h.state(ctx, name) })
}

// state is State without its deadline.
func (h *Hypervisor) state(ctx context.Context, name string) (hypervisor.State, error) {
	if err := ctx.Err(); err != nil {
		return hypervisor.StateUnknown, fmt.Errorf("state of %q: %w", name, err)
	}
	conn, err := h.acquire()
	if err != nil {
		return hypervisor.StateUnknown, fmt.Errorf("state of %q: %w", name, err)
	}
	defer release(conn)
	d, _, err := h.lookup(conn, "state of", name)
	if err != nil {
		return hypervisor.StateUnknown, err
	}
	defer func() { _ = d.Free() }()
	st, err := domainState(d)
	if err != nil {
		return hypervisor.StateUnknown, h.wrap("state of", name, err)
	}
	return st, nil
}

// List returns jitsu's domains, running or not. See hypervisor.Hypervisor.
func (h *Hypervisor) List(ctx context.Context) ([]hypervisor.Domain, error) {
	return callValue(h, ctx, "list", "domains", func() ([]hypervisor.Domain, error) { return h.list(ctx) })
}

// InterfaceStats returns the traffic counters of the domain's NIC as seen
// from the host.
func (h *Hypervisor) InterfaceStats(ctx context.Context, name string) (hypervisor.InterfaceStats, error) {
	return callValue(h, ctx, "interface stats of", name, func() (hypervisor.InterfaceStats, error) { return h.interfaceStats(ctx, name) })
}

// interfaceStats is InterfaceStats without its deadline.
func (h *Hypervisor) interfaceStats(ctx context.Context, name string) (hypervisor.InterfaceStats, error) {
	if err := ctx.Err(); err != nil {
		return hypervisor.InterfaceStats{}, fmt.Errorf("interface stats of %q: %w", name, err)
	}
	conn, err := h.acquire()
	if err != nil {
		return hypervisor.InterfaceStats{}, fmt.Errorf("interface stats of %q: %w", name, err)
	}
	defer release(conn)
	d, _, err := h.lookup(conn, "interface stats of", name)
	if err != nil {
		return hypervisor.InterfaceStats{}, err
	}
	defer func() { _ = d.Free() }()
	if active, err := d.IsActive(); err != nil || !active {
		return hypervisor.InterfaceStats{}, fmt.Errorf("interface stats of %q: %w", name, hypervisor.ErrNotRunning)
	}
	x, err := d.GetXMLDesc(0)
	if err != nil {
		return hypervisor.InterfaceStats{}, h.wrap("get XML of", name, err)
	}
	dev, err := liveTarget(x)
	if err != nil {
		return hypervisor.InterfaceStats{}, fmt.Errorf("interface stats of %q: %w", name, err)
	}
	s, err := d.InterfaceStats(dev)
	if err != nil {
		return hypervisor.InterfaceStats{}, h.wrap("interface stats of", name, err)
	}
	return hypervisor.InterfaceStats{
		RxBytes: uint64(s.RxBytes), TxBytes: uint64(s.TxBytes),
		RxPackets: uint64(s.RxPackets), TxPackets: uint64(s.TxPackets),
	}, nil
}

// AllInterfaceStats returns the NIC counters of every running domain, by
// name, in one call (libvirt's bulk domain stats): the reaper's read of N
// running unikernels costs one libvirt call, not four per unikernel
// (lookup, state, XML, counters). A domain of another jitsu instance or a
// foreign one is listed too; the caller looks up its own names.
func (h *Hypervisor) AllInterfaceStats(ctx context.Context) (map[string]hypervisor.InterfaceStats, error) {
	return callValue(h, ctx, "interface stats of", "every domain", func() (map[string]hypervisor.InterfaceStats, error) {
		return h.allInterfaceStats(ctx)
	})
}

// allInterfaceStats is AllInterfaceStats without its deadline.
func (h *Hypervisor) allInterfaceStats(ctx context.Context) (map[string]hypervisor.InterfaceStats, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("interface stats of every domain: %w", err)
	}
	conn, err := h.acquire()
	if err != nil {
		return nil, fmt.Errorf("interface stats of every domain: %w", err)
	}
	defer release(conn)
	recs, err := conn.GetAllDomainStats(nil, lv.DOMAIN_STATS_INTERFACE, lv.CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
	if err != nil {
		return nil, h.wrap("interface stats of", "every domain", err)
	}
	out := make(map[string]hypervisor.InterfaceStats, len(recs))
	for _, r := range recs {
		name, err := r.Domain.GetName()
		_ = r.Domain.Free()
		if err != nil {
			continue
		}
		var st hypervisor.InterfaceStats
		for _, n := range r.Net {
			st.RxBytes += n.RxBytes
			st.TxBytes += n.TxBytes
			st.RxPackets += n.RxPkts
			st.TxPackets += n.TxPkts
		}
		out[name] = st
	}
	return out, nil
}

// Events delivers lifecycle events of jitsu's domains; closed by Close.
func (h *Hypervisor) Events() <-chan hypervisor.Event { return h.events }

// Close stops the goroutines, closes the connection and the Events channel.
// It is safe to call more than once.
func (h *Hypervisor) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.cancel()
		h.mu.Unlock()
		h.queue.close()
		h.wg.Wait()
		h.waitCalls()
		h.disconnect()
		loop.release()
		close(h.events)
	})
	return nil
}
