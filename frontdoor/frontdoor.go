// Package frontdoor is jitsu's front door for a shared public IPv4
// address: a TCP listener that learns which unikernel a connection is for
// from the first bytes the client sends (the SNI of a TLS ClientHello, or
// the Host header of an HTTP/1.x request), summons that unikernel, waits
// until it is ready, connects to it and splices the two connections
// together. TLS is never terminated: the key stays in the unikernel.
//
// Everything is bounded: the time and the bytes spent reading the name,
// the connections being read, the connections waiting for a boot (in all
// and per unikernel). A connection over a bound is refused and counted.
// Unknown names get an HTTP 421 or a TLS unrecognized_name alert.
//
// The package knows nothing of the summoner or the configuration file: it
// consumes the Summoner interface declared here, and cmd/jitsu fills in a
// Config from config.FrontdoorConfig.
package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Summoner starts unikernels for the front door.
type Summoner interface {
	// SummonWait makes sure the unikernel called name runs and waits until
	// it is ready to take connections, or its boot failed, or ctx is done
	// (the front door bounds ctx by the route's MaxWait). A boot waiting
	// in the summoner's start queue is in progress: SummonWait waits for
	// it. client is the
	// address of the connection's peer, for the summoner's admission
	// accounting. It returns the unikernel's IPv4 address.
	SummonWait(ctx context.Context, name string, client netip.Addr) (netip.Addr, error)
	// Active records traffic of a spliced connection as activity of the
	// unikernel called name (it keeps it from being idled out). It must
	// not block.
	Active(name string)
}

// Route is where connections for a host name go.
type Route struct {
	// Unikernel is the name of the unikernel that serves the host name.
	Unikernel string
	// ProxyProtocol sends a PROXY protocol v2 header before the client's
	// bytes, so that the guest learns the client's address.
	ProxyProtocol bool
	// MaxWait bounds the wait for the unikernel to be ready, from the
	// summon; it must be positive. It is an outer bound, not a deadline
	// the boot must meet: the wait ends when SummonWait returns (ready or
	// failed). jitsu serve sets the summoner's SettleBound: the worst case
	// of a stop under way, the start queue, the create deadline and the
	// boot timeout.
	MaxWait time.Duration
	// BootTimeout is the unikernel's boot timeout: once it is ready, a
	// refused connect (a port other than the one its probe checks, not
	// open yet) is retried for this long.
	BootTimeout time.Duration
}

// Listener is one address the front door listens on.
type Listener struct {
	// Addr is the address to listen on; port 0 picks a free port (see
	// Server.Addrs).
	Addr netip.AddrPort
	// TLS says the name comes from the TLS ClientHello's SNI; otherwise it
	// comes from the HTTP Host header.
	TLS bool
	// GuestPort is the port connected to on the unikernel.
	GuestPort uint16
}

// Config is the front door's configuration. Every limit must be set
// (config/ owns the defaults).
type Config struct {
	Listeners []Listener
	// Routes maps host names (lower-case, without the final dot) to
	// routes. It can be replaced at run time with SetRoutes.
	Routes map[string]Route
	// NameTimeout bounds the time to read the name from a new connection.
	NameTimeout time.Duration
	// MaxHeaderBytes caps the bytes read to find the name.
	MaxHeaderBytes int
	// MaxPending caps connections whose name is being read.
	MaxPending int
	// MaxPendingPerSource caps them per client address.
	MaxPendingPerSource int
	// MaxWaiting caps connections waiting for a boot, in all.
	MaxWaiting int
	// MaxWaitingPerUnikernel caps them per unikernel.
	MaxWaitingPerUnikernel int
	// MaxConnections caps the connections open through the front door
	// (being read, waiting and spliced).
	MaxConnections int
	// DialTimeout bounds the connect to a ready unikernel.
	DialTimeout time.Duration
	// ActivityInterval is how often a spliced connection with traffic
	// reports activity.
	ActivityInterval time.Duration

	Summoner Summoner
	Log      *zap.Logger
	Registry prometheus.Registerer // nil: metrics not registered
}

func (c *Config) check() error {
	var errs []string
	if len(c.Listeners) == 0 {
		errs = append(errs, "no listeners")
	}
	for _, l := range c.Listeners {
		if !l.Addr.IsValid() || l.GuestPort == 0 {
			errs = append(errs, fmt.Sprintf("listener %v: invalid address or guest port %d", l.Addr, l.GuestPort))
		}
	}
	pos := map[string]int64{
		"NameTimeout": int64(c.NameTimeout), "MaxHeaderBytes": int64(c.MaxHeaderBytes),
		"MaxPending": int64(c.MaxPending), "MaxPendingPerSource": int64(c.MaxPendingPerSource),
		"MaxWaiting": int64(c.MaxWaiting), "MaxWaitingPerUnikernel": int64(c.MaxWaitingPerUnikernel),
		"MaxConnections": int64(c.MaxConnections), "DialTimeout": int64(c.DialTimeout),
		"ActivityInterval": int64(c.ActivityInterval),
	}
	for k, v := range pos {
		if v <= 0 {
			errs = append(errs, k+" must be positive")
		}
	}
	if c.MaxHeaderBytes > 0 && c.MaxHeaderBytes < 512 {
		errs = append(errs, "MaxHeaderBytes below 512 cannot hold a ClientHello")
	}
	if c.Summoner == nil {
		errs = append(errs, "no Summoner")
	}
	if len(errs) > 0 {
		return fmt.Errorf("front door config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// Server is the front door. Create it with New, run it with Run.
type Server struct {
	cfg    Config
	log    *zap.Logger
	m      *metrics
	routes atomic.Pointer[map[string]Route]
	ready  chan struct{}

	mu        sync.Mutex
	addrs     []netip.AddrPort
	conns     map[net.Conn]struct{}
	closing   bool
	pendingBy map[netip.Addr]int
	waitingBy map[string]int
	pending   int
	waiting   int
	wg        sync.WaitGroup
}

// New checks cfg and returns a server; it listens only once Run is
// called.
func New(cfg Config) (*Server, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, log: cfg.Log, m: m, ready: make(chan struct{}),
		conns: map[net.Conn]struct{}{}, pendingBy: map[netip.Addr]int{}, waitingBy: map[string]int{},
	}
	s.SetRoutes(cfg.Routes)
	return s, nil
}

// SetRoutes replaces the routing table (on a configuration reload).
// Connections already routed keep their unikernel.
func (s *Server) SetRoutes(routes map[string]Route) {
	cp := make(map[string]Route, len(routes))
	for k, v := range routes {
		cp[strings.TrimSuffix(strings.ToLower(k), ".")] = v
	}
	s.routes.Store(&cp)
}

// Ready is closed once every listener is bound.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the bound addresses, in the order of Config.Listeners,
// once Ready is closed.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.addrs...)
}

// Run listens on every address and serves until ctx is done; then it
// closes the listeners and every connection, and returns once all its
// goroutines have ended. It returns nil after ctx is done, or the error
// that prevented listening.
func (s *Server) Run(ctx context.Context) error {
	var lns []*net.TCPListener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	// No TCP keepalive on accepted connections (see dial).
	lc := net.ListenConfig{KeepAlive: -1}
	for _, l := range s.cfg.Listeners {
		ln, err := lc.Listen(ctx, "tcp", l.Addr.String())
		if err != nil {
			closeAll()
			return fmt.Errorf("front door: listen on %s: %w", l.Addr, err)
		}
		tl := ln.(*net.TCPListener)
		lns = append(lns, tl)
		s.mu.Lock()
		s.addrs = append(s.addrs, tl.Addr().(*net.TCPAddr).AddrPort())
		s.mu.Unlock()
	}
	close(s.ready)
	s.log.Info("front door listening", zap.Stringers("addrs", s.Addrs()))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var accepters sync.WaitGroup
	errc := make(chan error, len(lns))
	for i, ln := range lns {
		accepters.Add(1)
		go func() {
			defer accepters.Done()
			if err := s.accept(ctx, ln, s.cfg.Listeners[i]); err != nil {
				errc <- err
				cancel()
			}
		}()
	}
	<-ctx.Done()
	closeAll()
	accepters.Wait()
	s.mu.Lock()
	s.closing = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// accept accepts connections on ln until ctx is done.
func (s *Server) accept(ctx context.Context, ln *net.TCPListener, l Listener) error {
	var delay time.Duration
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, net.ErrClosed) {
				// EMFILE, ECONNABORTED and the like: back off, do not spin.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("front door: accept", zap.Error(err), zap.Duration("retry_in", delay))
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return nil
				}
				continue
			}
			return fmt.Errorf("front door: accept on %s: %w", ln.Addr(), err)
		}
		delay = 0
		if !s.track(c) {
			s.m.refuse("", reasonOverload)
			c.SetLinger(0)
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.serve(ctx, c, l)
		}()
	}
}

// track registers c, or reports false when MaxConnections is reached or
// the server is closing.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || len(s.conns) >= s.cfg.MaxConnections {
		return false
	}
	s.conns[c] = struct{}{}
	s.m.open.Set(float64(len(s.conns)))
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.m.open.Set(float64(len(s.conns)))
	s.mu.Unlock()
}

// acquirePending takes a slot for reading a name from src.
func (s *Server) acquirePending(src netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending >= s.cfg.MaxPending || s.pendingBy[src] >= s.cfg.MaxPendingPerSource {
		return false
	}
	s.pending++
	s.pendingBy[src]++
	return true
}

func (s *Server) releasePending(src netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending--
	if s.pendingBy[src]--; s.pendingBy[src] <= 0 {
		delete(s.pendingBy, src)
	}
}

// acquireWaiting takes a slot for waiting for unikernel's boot.
func (s *Server) acquireWaiting(unikernel string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting >= s.cfg.MaxWaiting || s.waitingBy[unikernel] >= s.cfg.MaxWaitingPerUnikernel {
		return false
	}
	s.waiting++
	s.waitingBy[unikernel]++
	return true
}

func (s *Server) releaseWaiting(unikernel string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waiting--
	if s.waitingBy[unikernel]--; s.waitingBy[unikernel] <= 0 {
		delete(s.waitingBy, unikernel)
	}
}
