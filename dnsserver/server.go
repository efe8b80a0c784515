// Package dnsserver is jitsu's authoritative DNS server. It answers for the
// configured zones over UDP and TCP; a query for the address of a
// unikernel's name asks the Summoner, which starts the unikernel if needed.
//
// Ordinary queries are answered from answers pre-encoded when the
// configuration is loaded (ID, flags and the question's case patched in),
// read and written in batches (recvmmsg/sendmmsg); anything unusual takes
// the general path through github.com/miekg/dns.
package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Summoner is what the server needs from the summoner.
type Summoner interface {
	// Summon ensures the named unikernel is (being) started and returns its
	// addresses. It normally returns at once; it may block up to a
	// configured response delay, and the server never stalls other queries
	// while one Summon waits.
	Summon(ctx context.Context, unikernel string) ([]netip.Addr, error)
}

// SourceSummoner is optionally implemented by the Summoner: Summon with
// the address the query came from, for admission control (a boot charged
// to the source prefix that asked for it). The server calls it instead of
// Summon whenever it knows the source.
type SourceSummoner interface {
	SummonFrom(ctx context.Context, src netip.Addr, unikernel string) ([]netip.Addr, error)
}

// Zone is one zone the server is authoritative for.
type Zone struct {
	// Origin is the zone's apex (FQDN, lower case).
	Origin string
	// Records are the static records, including the apex's SOA and NS
	// (owner names FQDN, lower case).
	Records []dns.RR
	// Unikernels maps an owner name (FQDN, lower case) to the name of the
	// unikernel whose addresses answer A and AAAA queries for it.
	Unikernels map[string]string
	// Secondaries may transfer the zone (AXFR/IXFR over TCP, from their
	// address) and are sent NOTIFY (at their port) when it changes.
	Secondaries []netip.AddrPort
	// TSIG, if set, must sign every transfer; NOTIFY is signed with it.
	TSIG *TSIGKey
}

// Config is the server's zone data; Update swaps it at run time.
type Config struct {
	Zones []Zone
	// SummonTTL is the TTL of the A and AAAA records of unikernel names
	// (whole seconds).
	SummonTTL time.Duration
	// Addrs are the unikernels' addresses (by unikernel name): their names
	// are transferred to secondaries as A/AAAA records with these.
	Addrs map[string][]netip.Addr
}

// Options are the server's run-time dependencies.
type Options struct {
	// Listen are the addresses ("host:port", port 0 allowed) served over
	// both UDP and TCP.
	Listen []string
	// Summoner answers for unikernel names; nil answers them SERVFAIL.
	Summoner Summoner
	// SummonAfter holds back the Summoner: unikernel names get SERVFAIL
	// until every channel is closed (e.g. until the SYN proxy intercepts
	// and the summoner has adopted what runs). Static names are answered
	// from the start.
	SummonAfter []<-chan struct{}
	// Logger; nil logs nothing.
	Logger *zap.Logger
	// Registerer for the server's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// RRL limits the rate of UDP answers (see RRLOptions); zero is off.
	RRL RRLOptions
	// Cookies answers DNS cookies (RFC 7873, RFC 9018); a valid server
	// cookie exempts its client from RRL.
	Cookies bool
	// CookieSecret, if not nil, is the shared server secret of the
	// cookies (CookieSecretLen bytes): servers with the same secret
	// accept each other's server cookies, and a restart keeps them valid
	// (the keys rotate hourly, derived from the secret and the time; see
	// cookie.go). nil: a random secret per process.
	CookieSecret []byte
	// ResponseDelay holds the answer for a booting unikernel until it is
	// ready, up to this long, if the Summoner implements Waiter; 0 = never.
	ResponseDelay time.Duration
}

// Tunables.
const (
	tcpIdleTimeout = 10 * time.Second
	tcpMaxConns    = 1024
	maxUDPReaders  = 256 // per socket, including those waiting in Summon
)

// Server is an authoritative DNS server. Create it with New.
type Server struct {
	opts     Options
	log      *zap.Logger
	met      *metrics
	snap     atomic.Pointer[snapshot]
	summonRL rateLimit

	mu       sync.Mutex
	started  bool
	closed   bool
	ready    chan struct{} // closed once listening
	ctx      context.Context
	cancel   context.CancelFunc
	udp      []*udpListener
	tcp      []net.Listener
	conns    map[net.Conn]struct{}
	addrs    []net.Addr
	wg       sync.WaitGroup
	updateMu sync.Mutex
	xfr      xfrState // zone versions and NOTIFY (xfr.go), under updateMu
	hard     hardening
}

// worker is per-goroutine scratch space.
type worker struct {
	key []byte
	// The client's address: src (TCP), or addr (UDP, converted only when
	// needed).
	src  netip.Addr
	addr net.Addr
	g    guardScratch
	// summon is summonFunc's closure over this worker.
	summon summonFunc
}

// source returns the client's address.
func (w *worker) source() netip.Addr {
	if !w.src.IsValid() && w.addr != nil {
		return addrOf(w.addr)
	}
	return w.src
}

// New validates cfg and returns a server that is not yet listening.
func New(cfg Config, opts Options) (*Server, error) {
	if len(opts.Listen) == 0 {
		return nil, errors.New("new DNS server: no listen address")
	}
	for _, a := range opts.Listen {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("new DNS server: listen address %q: %w", a, err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	met, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("new DNS server: %w", err)
	}
	s := &Server{opts: opts, log: log, met: met, conns: map[net.Conn]struct{}{}, ready: make(chan struct{})}
	s.summonRL.interval = time.Second
	s.xfr.notify = newNotifier(s)
	if err := s.initHardening(opts); err != nil {
		return nil, fmt.Errorf("new DNS server: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.Update(cfg); err != nil {
		s.cancel()
		return nil, fmt.Errorf("new DNS server: %w", err)
	}
	return s, nil
}

// Update validates cfg and swaps it in atomically: queries in flight finish
// with the old zones, later ones see the new; none is lost.
func (s *Server) Update(cfg Config) error {
	snap, err := compile(cfg)
	if err != nil {
		return fmt.Errorf("load zones: %w", err)
	}
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	s.install(snap, cfg)
	return nil
}

// Run binds UDP and TCP on every listen address, closes Ready, and serves
// until ctx ends (or Close is called); it then closes every socket and
// connection and returns once every goroutine of the server has ended. It
// returns nil after such a shutdown, or the error that kept it from
// listening. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-s.ctx.Done(): // Close
	}
	return s.Close()
}

// Ready is closed once the server listens on every address.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Start binds UDP and TCP on every listen address and serves until Close
// (or until ctx is cancelled). It returns once listening. Run is Start,
// wait for ctx, Close.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return errors.New("start DNS server: already started or closed")
	}
	s.started = true
	var lc net.ListenConfig
	for _, addr := range s.opts.Listen {
		uc, ln, err := listenPair(ctx, &lc, addr)
		if err != nil {
			s.closeLocked()
			return fmt.Errorf("start DNS server: %w", err)
		}
		l := newUDPListener(s, uc)
		s.udp = append(s.udp, l)
		s.tcp = append(s.tcp, ln)
		s.addrs = append(s.addrs, uc.LocalAddr(), ln.Addr())
	}
	readers := min(max(runtime.GOMAXPROCS(0), 1), 4)
	for _, l := range s.udp {
		l.base = int32(readers)
		for range readers {
			l.spawn()
		}
		s.wg.Add(1)
		go l.supervise()
	}
	for _, ln := range s.tcp {
		s.wg.Add(1)
		go s.acceptLoop(ln)
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); _ = s.xfr.notify.Run(s.ctx) }()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
			s.mu.Lock()
			if !s.closed {
				s.closeLocked()
			}
			s.mu.Unlock()
		case <-s.ctx.Done():
		}
	}()
	s.log.Info("DNS server listening", zap.Stringers("addrs", s.addrs))
	close(s.ready)
	return nil
}

// Addrs returns the bound addresses (UDP and TCP for each listen address).
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// Close stops serving and waits for every goroutine of the server.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closeLocked()
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) closeLocked() {
	s.closed = true
	s.cancel()
	for _, l := range s.udp {
		_ = l.conn.Close()
	}
	for _, ln := range s.tcp {
		_ = ln.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
}

// errNotSummoning answers unikernel names until SummonAfter's channels
// are closed.
var errNotSummoning = errors.New("not summoning yet")

// summon calls the Summoner for a query from src (invalid if unknown):
// SummonFrom if it is a SourceSummoner and src is known, Summon otherwise.
func (s *Server) summon(src netip.Addr, unikernel string) ([]netip.Addr, error) {
	if s.opts.Summoner == nil {
		return nil, errors.New("no summoner configured")
	}
	for _, c := range s.opts.SummonAfter {
		select {
		case <-c:
		default:
			return nil, fmt.Errorf("summon %q: %w", unikernel, errNotSummoning)
		}
	}
	var addrs []netip.Addr
	var err error
	if ss, ok := s.opts.Summoner.(SourceSummoner); ok && src.IsValid() {
		addrs, err = ss.SummonFrom(s.ctx, src, unikernel)
	} else {
		addrs, err = s.opts.Summoner.Summon(s.ctx, unikernel)
	}
	if err != nil {
		return nil, fmt.Errorf("summon %q: %w", unikernel, err)
	}
	return addrs, nil
}

// summonFunc returns s.summon for the worker's current query as a
// summonFunc (made once per worker).
func (w *worker) summonFunc(s *Server) summonFunc {
	if w.summon == nil {
		w.summon = func(unikernel string) ([]netip.Addr, error) { return s.summon(w.source(), unikernel) }
	}
	return w.summon
}

// summonFailed counts and (rate-limited) logs a failed summon.
func (s *Server) summonFailed(name string, err error) {
	s.met.summonErrors.Inc()
	if ok, suppressed := s.summonRL.allow(); ok {
		s.log.Warn("summon failed, answering SERVFAIL", zap.String("name", name), zap.Error(err),
			zap.Int64("suppressed", suppressed))
	}
}
