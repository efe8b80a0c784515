package summoner

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// probe blocks until the unikernel is ready or ctx is done. off is where
// a console probe starts reading the console log.
func (s *Summoner) probe(ctx context.Context, cfg *Unikernel, off int64) error {
	if s.opts.Probe != nil {
		return s.opts.Probe(ctx, cfg.Spec.Name)
	}
	switch cfg.Ready.Kind {
	case ReadyConsole:
		return probeConsole(ctx, s.clock, s.opts.ProbeInterval, cfg.Spec.ConsoleLog, off, cfg.Ready.Regexp)
	case ReadyDelay:
		if err := sleep(ctx, s.clock, cfg.Ready.Delay); err != nil {
			return fmt.Errorf("delay probe: %w", err)
		}
		return nil
	}
	return probeTCP(ctx, s.clock, s.opts.ProbeInterval, cfg.Addrs, cfg.Ready.Port, s.opts.ProbeMark)
}

// probeDialTimeout bounds one probe connection. A SYN sent before the
// guest's network is up is lost and the kernel would only retransmit it
// after a second, so probeTCP does not wait for it: it starts a new
// connection every interval, at most maxProbeDials at a time. The bound is
// small on purpose: a guest that answers its SYN-ACKs late (just resumed,
// or slow under TCG) keeps each probe SYN as a pending request, and a
// guest without SYN cookies drops every new SYN once its listen backlog is
// full of them, which would turn a slow start into a failed one.
const (
	probeDialTimeout = 250 * time.Millisecond
	maxProbeDials    = 4
)

// probeTCP connects to port on each address, a new attempt every interval
// without waiting for earlier ones, until one connection succeeds. Its
// sockets carry mark (when non-zero), so that the SYN proxy lets the
// probe's own SYNs through while it holds the clients'.
func probeTCP(ctx context.Context, c Clock, interval time.Duration, addrs []netip.Addr, port uint16, mark uint32) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := net.Dialer{Timeout: probeDialTimeout}
	if mark != 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, int(mark))
			}); err != nil {
				return err
			}
			return serr
		}
	}
	targets := make([]string, len(addrs))
	for i, a := range addrs {
		targets[i] = net.JoinHostPort(a.String(), strconv.Itoa(int(port)))
	}
	ok := make(chan struct{}, 1)
	slots := make(chan struct{}, maxProbeDials)
	var wg sync.WaitGroup
	defer wg.Wait()
	var lastErr atomic.Value
	for {
		for _, t := range targets {
			select {
			case slots <- struct{}{}:
			case <-ok:
				return nil
			case <-ctx.Done():
				return fmt.Errorf("tcp probe %s: %w (last: %v)", t, ctx.Err(), lastErr.Load())
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				conn, err := d.DialContext(ctx, "tcp", t)
				if err != nil {
					lastErr.Store(err.Error())
					return
				}
				_ = conn.Close()
				select {
				case ok <- struct{}{}:
				default:
				}
			}()
		}
		select {
		case <-ok:
			return nil
		default:
		}
		if err := sleep(ctx, c, interval); err != nil {
			select {
			case <-ok:
				return nil
			default:
			}
			return fmt.Errorf("tcp probe %v: %w", targets, err)
		}
	}
}

// probeConsole tails path from off (or from 0 if the file is shorter,
// i.e. was truncated) until a line matches re.
func probeConsole(ctx context.Context, c Clock, interval time.Duration, path string, off int64, re *regexp.Regexp) error {
	var partial []byte
	buf := make([]byte, 32*1024)
	for {
		n, err := readFrom(path, off, buf)
		switch {
		case errors.Is(err, errShrunk):
			off, partial = 0, nil
			continue
		case err != nil && !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("console probe %s: %w", path, err)
		}
		if n > 0 {
			off += int64(n)
			data := append(partial, buf[:n]...)
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					break
				}
				if re.Match(bytes.TrimRight(data[:i], "\r")) {
					return nil
				}
				data = data[i+1:]
			}
			if re.Match(data) { // a last line without newline yet
				return nil
			}
			partial = append([]byte(nil), data...)
			if n == len(buf) {
				continue
			}
		}
		if err := sleep(ctx, c, interval); err != nil {
			return fmt.Errorf("console probe %s: %w", path, err)
		}
	}
}

var errShrunk = errors.New("file shrank")

// readFrom reads path at off into buf.
func readFrom(path string, off int64, buf []byte) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Size() < off {
		return 0, errShrunk
	}
	n, err := f.ReadAt(buf, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// consoleSize is the console log's size now (0 if missing): a console
// probe only looks at what the new boot writes.
func consoleSize(path string) int64 {
	if path == "" {
		return 0
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// consoleTail returns the last n lines of the console log (of its last
// 16 KiB), nil if there is none.
func consoleTail(path string, n int) []string {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const window = 16 * 1024
	var start int64
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		start = fi.Size() - window
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return nil
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, window), window)
	for sc.Scan() {
		lines = append(lines, strings.TrimRight(sc.Text(), "\r"))
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}
