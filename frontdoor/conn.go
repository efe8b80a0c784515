package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Refusal reasons, the values of the metrics' reason label.
const (
	reasonOverload      = "overload"        // MaxConnections, MaxPending or MaxPendingPerSource reached
	reasonTimeout       = "timeout"         // no name within NameTimeout
	reasonClosed        = "closed"          // the client closed before sending a name
	reasonMalformed     = "malformed"       // not TLS / not HTTP, or broken syntax
	reasonTooLarge      = "too_large"       // no name within MaxHeaderBytes
	reasonNoName        = "no_name"         // a ClientHello without SNI, a request without Host
	reasonUnknownName   = "unknown_name"    // a name no front-door unikernel answers for
	reasonBootQueueFull = "boot_queue_full" // MaxWaiting or MaxWaitingPerUnikernel reached
	reasonSummonFailed  = "summon_failed"   // the unikernel did not become ready
	reasonDialFailed    = "dial_failed"     // the ready unikernel refused the connection
)

// What a refused client is told.
type answer int

const (
	answerNone        answer = iota // just close
	answerBadRequest                // HTTP 400 / TLS decode_error
	answerTooLarge                  // HTTP 431 / close
	answerUnknown                   // HTTP 421 / TLS unrecognized_name
	answerUnavailable               // HTTP 503 / TLS internal_error
)

// serve handles one accepted connection from start to end.
func (s *Server) serve(ctx context.Context, c *net.TCPConn, l Listener) {
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	if !s.acquirePending(src) {
		s.m.refuse("", reasonOverload)
		c.SetLinger(0)
		return
	}
	head, name, err := s.readName(c, l.TLS)
	s.releasePending(src)
	if err != nil {
		reason, ans := classify(err)
		s.m.refuse("", reason)
		s.log.Debug("front door: no name", zap.Stringer("client", src), zap.String("reason", reason), zap.Error(err))
		s.reject(c, l.TLS, ans)
		return
	}
	rt, ok := (*s.routes.Load())[name]
	if !ok {
		s.m.refuse("", reasonUnknownName)
		s.log.Debug("front door: unknown name", zap.Stringer("client", src), zap.String("name", name))
		s.reject(c, l.TLS, answerUnknown)
		return
	}
	um := s.m.of(rt.Unikernel)
	um.conns.Inc()
	guest, err := s.connect(ctx, rt, um, src, l.GuestPort)
	if err != nil {
		var r refusal
		if errors.As(err, &r) {
			s.m.refuse(rt.Unikernel, r.reason)
		}
		s.log.Info("front door: refused", zap.Stringer("client", src), zap.String("name", name),
			zap.String("unikernel", rt.Unikernel), zap.Error(err))
		s.reject(c, l.TLS, answerUnavailable)
		return
	}
	defer s.untrack(guest)
	if err := s.replay(guest, c, head, rt.ProxyProtocol); err != nil {
		s.log.Info("front door: replay to guest", zap.String("unikernel", rt.Unikernel), zap.Error(err))
		return
	}
	um.bytesIn.Add(float64(len(head)))
	s.splice(c, guest, rt.Unikernel, um)
}

// refusal is an error with its metrics reason.
type refusal struct {
	reason string
	err    error
}

func (r refusal) Error() string { return r.reason + ": " + r.err.Error() }
func (r refusal) Unwrap() error { return r.err }

// connect summons the route's unikernel, waits for it (as long as its
// boot is in progress, at most MaxWait) and dials it, retrying refused
// connects for its boot timeout from the moment it is ready. The guest connection is tracked: Run's shutdown
// closes it.
func (s *Server) connect(ctx context.Context, rt Route, um *unikernelMetrics, src netip.Addr, port uint16) (*net.TCPConn, error) {
	if !s.acquireWaiting(rt.Unikernel) {
		return nil, refusal{reasonBootQueueFull, errors.New("too many connections wait for a boot")}
	}
	start := time.Now()
	bctx, cancel := context.WithTimeout(ctx, rt.MaxWait)
	addr, err := s.cfg.Summoner.SummonWait(bctx, rt.Unikernel, src)
	cancel()
	s.releaseWaiting(rt.Unikernel)
	um.bootWait.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, refusal{reasonSummonFailed, fmt.Errorf("summon %q: %w", rt.Unikernel, err)}
	}
	to := netip.AddrPortFrom(addr, port)
	gc, err := s.dial(ctx, to, time.Now().Add(rt.BootTimeout))
	if err != nil {
		return nil, refusal{reasonDialFailed, fmt.Errorf("connect to %q at %s: %w", rt.Unikernel, to, err)}
	}
	guest := gc.(*net.TCPConn)
	s.mu.Lock()
	closing := s.closing
	if !closing {
		s.conns[guest] = struct{}{} // not counted against MaxConnections: its client is
	}
	s.mu.Unlock()
	if closing {
		guest.Close()
		return nil, refusal{reasonOverload, errors.New("front door shutting down")}
	}
	return guest, nil
}

// dialRetry is the pause between connects refused by a ready guest.
const dialRetry = 20 * time.Millisecond

// dial connects to the guest. A ready guest may refuse for a moment a
// port other than the one its readiness probe checks (it opens them one
// after the other): refused connects are retried until deadline. No TCP
// keepalive (four setsockopt calls a connection): the front door is
// transparent, and dead peers are the endpoints' business, as on a direct
// connection.
func (s *Server) dial(ctx context.Context, to netip.AddrPort, deadline time.Time) (net.Conn, error) {
	d := net.Dialer{Timeout: s.cfg.DialTimeout, KeepAlive: -1}
	for {
		c, err := d.DialContext(ctx, "tcp", to.String())
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().Add(dialRetry).After(deadline) {
			return c, err
		}
		select {
		case <-time.After(dialRetry):
		case <-ctx.Done():
			return nil, err
		}
	}
}

// readName reads from c until the name is known, within NameTimeout and
// MaxHeaderBytes. It returns the bytes read and the name.
func (s *Server) readName(c *net.TCPConn, tls bool) ([]byte, string, error) {
	if err := c.SetReadDeadline(time.Now().Add(s.cfg.NameTimeout)); err != nil {
		return nil, "", fmt.Errorf("set deadline: %w", err)
	}
	var feed func([]byte) (string, error)
	if tls {
		p := &sniParser{max: s.cfg.MaxHeaderBytes}
		feed = p.feed
	} else {
		p := &hostParser{max: s.cfg.MaxHeaderBytes}
		feed = p.feed
	}
	// Start small: most heads fit in 1 KiB and idle clients cost little.
	buf := make([]byte, 0, min(1024, s.cfg.MaxHeaderBytes))
	for {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(2*cap(buf), s.cfg.MaxHeaderBytes))
			copy(nb, buf)
			buf = nb
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 {
			name, perr := feed(buf)
			if !errors.Is(perr, errNeedMore) {
				if perr == nil {
					perr = c.SetReadDeadline(time.Time{})
				}
				return buf, name, perr
			}
		}
		if err != nil {
			return buf, "", fmt.Errorf("read name after %d bytes: %w", len(buf), err)
		}
	}
}

// classify maps a readName error to its reason and answer.
func classify(err error) (string, answer) {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return reasonTimeout, answerNone
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return reasonClosed, answerNone
	case errors.Is(err, ErrTooLarge):
		return reasonTooLarge, answerTooLarge
	case errors.Is(err, ErrNoSNI), errors.Is(err, ErrNoHost):
		return reasonNoName, answerUnknown
	case errors.Is(err, ErrNotTLS), errors.Is(err, ErrMalformed):
		return reasonMalformed, answerBadRequest
	}
	return reasonClosed, answerNone // reset by the peer and the like
}

// HTTP answers and TLS alerts (RFC 8446 section 6: a fatal alert record).
var (
	httpAnswers = map[answer]string{
		answerBadRequest:  httpAnswer("400 Bad Request", "bad request\n"),
		answerTooLarge:    httpAnswer("431 Request Header Fields Too Large", "request head too large\n"),
		answerUnknown:     httpAnswer("421 Misdirected Request", "no service for this host name here\n"),
		answerUnavailable: httpAnswer("503 Service Unavailable", "service unavailable, try again later\n"),
	}
	tlsAlerts = map[answer][]byte{
		answerBadRequest:  tlsAlert(50), // decode_error
		answerUnknown:     tlsAlert(112),
		answerUnavailable: tlsAlert(80), // internal_error
	}
)

func httpAnswer(status, body string) string {
	return fmt.Sprintf("HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, len(body), body)
}

func tlsAlert(desc byte) []byte { return []byte{21, 3, 3, 0, 2, 2, desc} }

// Bounds of a refusal's lingering close.
const (
	rejectWriteTimeout = time.Second
	rejectDrainTimeout = 500 * time.Millisecond
	rejectDrainBytes   = 64 << 10
)

// reject answers a refused client and closes c. It half-closes and drains
// what the client still sends (bounded) so that the answer is not lost to
// a reset.
func (s *Server) reject(c *net.TCPConn, tls bool, a answer) {
	var msg []byte
	if tls {
		msg = tlsAlerts[a]
	} else if h, ok := httpAnswers[a]; ok {
		msg = []byte(h)
	}
	if msg == nil {
		c.SetLinger(0)
		return
	}
	c.SetWriteDeadline(time.Now().Add(rejectWriteTimeout))
	if _, err := c.Write(msg); err != nil {
		return
	}
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(rejectDrainTimeout))
	io.CopyN(io.Discard, c, rejectDrainBytes)
}

// replay sends the PROXY header (if asked) and the bytes read from the
// client to the guest.
func (s *Server) replay(guest, client *net.TCPConn, head []byte, proxy bool) error {
	out := head
	if proxy {
		from := client.RemoteAddr().(*net.TCPAddr).AddrPort()
		to := client.LocalAddr().(*net.TCPAddr).AddrPort()
		out = append(proxyHeader(from, to), head...)
	}
	guest.SetWriteDeadline(time.Now().Add(s.cfg.DialTimeout))
	if _, err := guest.Write(out); err != nil {
		return fmt.Errorf("write %d bytes: %w", len(out), err)
	}
	return guest.SetWriteDeadline(time.Time{})
}

// spliceChunk is the most a splice call moves before the byte counters
// are updated.
const spliceChunk = 4 << 20

// splice copies both directions until both are done; each direction uses
// splice(2) (TCPConn.ReadFrom of a TCPConn). A direction whose source
// ends half-closes its destination.
func (s *Server) splice(client, guest *net.TCPConn, unikernel string, um *unikernelMetrics) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.pipe(guest, client, unikernel, um.bytesIn)
	}()
	s.pipe(client, guest, unikernel, um.bytesOut)
	<-done
}

// adder is a prometheus counter.
type adder interface{ Add(float64) }

// pipe copies src to dst. The read deadline wakes it every
// ActivityInterval so that the traffic is counted and reported as
// activity while the connection lasts.
func (s *Server) pipe(dst, src *net.TCPConn, unikernel string, bytes adder) {
	var reported time.Time
	for {
		src.SetReadDeadline(time.Now().Add(s.cfg.ActivityInterval))
		n, err := io.CopyN(dst, src, spliceChunk)
		if n > 0 {
			bytes.Add(float64(n))
			if now := time.Now(); now.Sub(reported) >= s.cfg.ActivityInterval/2 {
				reported = now
				s.cfg.Summoner.Active(unikernel)
			}
		}
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if !errors.Is(err, io.EOF) {
			// Reset or closed: tear both directions down.
			src.Close()
			dst.Close()
			return
		}
		dst.CloseWrite()
		return
	}
}
