package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// maxRequest bounds one request line.
const maxRequest = 64 << 10

// idleTimeout closes a connection that sends no request for this long.
const idleTimeout = 5 * time.Minute

// writeTimeout bounds writing one response.
const writeTimeout = 10 * time.Second

// Server serves the control protocol on a Unix socket.
type Server struct {
	ln  *net.UnixListener
	d   Daemon
	log *zap.Logger
	// path is the socket path, removed on Close.
	path string
	mode os.FileMode
	// ready is closed once the socket is created.
	ready chan struct{}

	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New returns a control server for the socket at path (permissions mode)
// answering with d; nothing is created until Run (or use Listen).
func New(path string, mode os.FileMode, d Daemon, log *zap.Logger) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if d == nil {
		return nil, errors.New("control: nil Daemon")
	}
	if path == "" {
		return nil, errors.New("control: no socket path")
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		d: d, log: log, path: path, mode: mode,
		ctx: ctx, cancel: cancel,
		conns: make(map[net.Conn]struct{}),
		ready: make(chan struct{}),
	}, nil
}

// Listen creates the control socket at path with permissions mode and
// returns a Server answering with d. A stale socket left by a dead daemon is
// removed; a socket where a daemon still answers, or a path that is not a
// socket, is an error. The parent directory is created (0755) if missing.
func Listen(path string, mode os.FileMode, d Daemon, log *zap.Logger) (*Server, error) {
	s, err := New(path, mode, d, log)
	if err != nil {
		return nil, err
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

// Run creates the socket (as Listen does), closes Ready, and serves until
// ctx ends; it then closes every connection, removes the socket and
// returns once every connection's goroutine has ended (nil after such a
// shutdown).
func (s *Server) Run(ctx context.Context) error {
	if err := s.listen(); err != nil {
		s.cancel()
		return err
	}
	return s.Serve(ctx)
}

// Ready is closed once the socket accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// listen creates the socket.
func (s *Server) listen() error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("create control socket directory: %w", err)
	}
	if err := removeStale(s.path); err != nil {
		return err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("listen on control socket %s: %w", s.path, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(s.path, s.mode); err != nil {
		ln.Close()
		return fmt.Errorf("chmod control socket %s: %w", s.path, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	close(s.ready)
	return nil
}

// removeStale removes a socket at path that no daemon answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("control socket %s: exists and is not a socket; remove it or choose another control.socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another jitsu is running and listening on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: probe for a running daemon: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale control socket %s: %w", path, err)
	}
	return nil
}

// Addr returns the socket's path.
func (s *Server) Addr() string { return s.path }

// Serve accepts connections until ctx is done or Close is called, and
// returns once every connection's goroutine has ended. It returns nil on
// such a shutdown.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		return fmt.Errorf("serve control socket %s: not listening", s.path)
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				s.wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.Close()
			s.wg.Wait()
			return fmt.Errorf("accept on control socket %s: %w", s.path, err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, cancels running requests, closes every connection
// and removes the socket. It waits for the connections' goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("close control socket %s: %w", s.path, err)
	}
	return nil
}

// handle serves the requests of one connection in turn.
func (s *Server) handle(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(idleTimeout))
		line, err := readLine(r)
		if err != nil {
			if !errors.Is(err, errEOF) {
				s.log.Debug("control connection", zap.Error(err))
				s.write(c, response{V: Version, Error: &wireError{Code: codeInvalid, Message: err.Error()}})
			}
			return
		}
		resp := s.dispatch(line)
		if err := s.write(c, resp); err != nil {
			s.log.Debug("control write", zap.Error(err))
			return
		}
	}
}

// errEOF marks a connection closed between requests.
var errEOF = errors.New("eof")

// readLine reads one request line of at most maxRequest bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxRequest {
			return nil, fmt.Errorf("request longer than %d bytes", maxRequest)
		}
		if err == nil {
			return line, nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(line) == 0 {
			return nil, errEOF
		}
		return nil, fmt.Errorf("read request: %w", err)
	}
}

func (s *Server) write(c net.Conn, resp response) error {
	b, err := json.Marshal(resp)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err = c.Write(append(b, '\n'))
	return err
}

// dispatch decodes one request and runs it against the Daemon.
func (s *Server) dispatch(line []byte) response {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return errResponse(codeInvalid, fmt.Errorf("decode request: %w", err))
	}
	if req.V != Version {
		return errResponse(codeVersion, fmt.Errorf("protocol version %d not supported (this daemon speaks %d): use a matching jitsu binary", req.V, Version))
	}
	ctx := s.ctx
	log := s.log.With(zap.String("op", req.Op), zap.String("unikernel", req.Name))
	var err error
	switch req.Op {
	case opStatus:
		st, err := s.d.Status(ctx)
		if err != nil {
			return errResponse(codeOf(err), fmt.Errorf("status: %w", err))
		}
		if st == nil {
			st = []UnikernelStatus{}
		}
		return response{V: Version, OK: true, Status: st}
	case opStart:
		if req.Name == "" {
			return errResponse(codeInvalid, errors.New("start: missing unikernel name"))
		}
		log.Info("operator start")
		err = s.d.Start(ctx, req.Name)
	case opStop:
		if req.Name == "" {
			return errResponse(codeInvalid, errors.New("stop: missing unikernel name"))
		}
		log.Info("operator stop", zap.String("mode", req.Mode))
		err = s.d.Stop(ctx, req.Name, req.Mode)
	case opReload:
		log.Info("operator reload")
		err = s.d.Reload(ctx)
	default:
		return errResponse(codeInvalid, fmt.Errorf("unknown operation %q", req.Op))
	}
	if err != nil {
		log.Warn("control request failed", zap.Error(err))
		return errResponse(codeOf(err), err)
	}
	return response{V: Version, OK: true}
}

func errResponse(code string, err error) response {
	return response{V: Version, Error: &wireError{Code: code, Message: err.Error()}}
}
