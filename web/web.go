// Package web serves jitsu's HTTP side: Prometheus metrics on /metrics,
// pprof on /debug/pprof/ when enabled, the unikernels' status as JSON on
// /api/status, and on / a small status page (plain HTML, CSS and
// JavaScript embedded in the binary) that polls /api/status every second to
// show the unikernels' states live and a timeline of recent boots.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/control"
)

//go:embed static
var static embed.FS

// statusTimeout bounds one Daemon.Status call.
const statusTimeout = 2 * time.Second

// Options configures a Server.
type Options struct {
	// Registry is scraped on /metrics; nil = no /metrics.
	Registry prometheus.Gatherer
	// Pprof serves /debug/pprof/ when true.
	Pprof bool
	// Daemon answers /api/status; nil = /api/status answers 503.
	Daemon control.Daemon
	// Logger logs HTTP errors; nil = no logging.
	Logger *zap.Logger
	// Auth, if set, is required on every endpoint (see LoadAuth).
	Auth *Auth
	// Listen is the address ("host:port") Run listens on.
	Listen string
}

// Server is jitsu's HTTP handler.
type Server struct {
	mux    *http.ServeMux
	d      control.Daemon
	log    *zap.Logger
	auth   *Auth
	listen string
	ready  chan struct{}
	addr   net.Addr // set before ready is closed
}

// New returns a Server with the endpoints Options asks for.
func New(o Options) *Server {
	s := &Server{mux: http.NewServeMux(), d: o.Daemon, log: o.Logger, auth: o.Auth, listen: o.Listen, ready: make(chan struct{})}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if o.Registry != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{
			ErrorLog: zap.NewStdLog(s.log),
		}))
	}
	if o.Pprof {
		s.mux.HandleFunc("/debug/pprof/", pprof.Index)
		s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		s.mux.HandleFunc("/debug/pprof/profile", boundedSeconds(pprof.Profile))
		s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("/debug/pprof/trace", boundedSeconds(pprof.Trace))
	}
	s.mux.HandleFunc("GET /api/status", s.apiStatus)
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	s.mux.Handle("GET /{$}", files)
	s.mux.Handle("GET /static/", http.StripPrefix("/static", files))
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if s.auth != nil && !s.auth.allowed(r) {
		s.auth.challenge(w)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// apiStatus answers the Daemon's status as a JSON array.
func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if s.d == nil {
		http.Error(w, "no daemon", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
	defer cancel()
	st, err := s.d.Status(ctx)
	if err != nil {
		s.log.Warn("status page: daemon status", zap.Error(err))
		http.Error(w, "status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if st == nil {
		st = []control.UnikernelStatus{}
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(st); err != nil {
		s.log.Debug("status page: write", zap.Error(err))
	}
}

// Run listens on Options.Listen, closes Ready, and serves until ctx is
// done, then shuts down gracefully (waiting up to 5 s for requests in
// flight).
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return fmt.Errorf("listen for metrics and status page on %s: %w", s.listen, err)
	}
	s.addr = ln.Addr()
	close(s.ready)
	return s.ServeListener(ctx, ln)
}

// Ready is closed once Run listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address Run listens on, once Ready is closed.
func (s *Server) Addr() net.Addr {
	<-s.ready
	return s.addr
}

// Serve listens on addr and serves until ctx is done, then shuts down
// gracefully (waiting up to 5 s for requests in flight).
func (s *Server) Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for metrics and status page on %s: %w", addr, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener serves on ln until ctx is done; it closes ln.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	warnPublic(s.log, ln.Addr(), s.auth)
	hs := newHTTPServer(s, s.log)
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve metrics and status page on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	if err != nil {
		hs.Close() // requests still running (e.g. a CPU profile): cut them
	}
	if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shut down metrics and status page on %s: %w", ln.Addr(), err)
	}
	return nil
}
