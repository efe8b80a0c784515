package dnsserver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"time"

	"go.uber.org/zap"
)

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("tcp accept", zap.Error(err))
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			continue
		}
		// Makes room by closing the oldest idle connection if need be.
		slot := s.hard.tcp.admit(c)
		if slot == nil {
			s.mu.Unlock()
			s.met.droppedTCPLimit.Inc()
			_ = c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveTCP(c, slot)
	}
}

// serveTCP answers the length-prefixed queries of one connection in order.
func (s *Server) serveTCP(c net.Conn, slot *tcpConn) {
	defer s.wg.Done()
	defer func() {
		_ = c.Close()
		s.hard.tcp.release(slot)
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	w := &worker{key: make([]byte, 0, 300), src: addrOf(c.RemoteAddr())}
	r := bufio.NewReader(c)
	req := make([]byte, 0, 512)
	out := make([]byte, 2, 4096)
	for {
		s.hard.tcp.setBusy(slot, false)
		_ = c.SetReadDeadline(time.Now().Add(s.hard.tcp.idleTimeout()))
		var hdr [2]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if cap(req) < n {
			req = make([]byte, n)
		}
		req = req[:n]
		if _, err := io.ReadFull(r, req); err != nil {
			return
		}
		s.hard.tcp.setBusy(slot, true)
		if done, err := s.serveTransfer(c, s.snap.Load(), req); done {
			if err != nil {
				return
			}
			continue
		}
		snap := s.snap.Load()
		s.hard.delay.wait(snap, req, w.src)
		resp, _ := s.process(w, snap, req, true, true, out[2:2])
		resp = s.guard(w, req, resp, c.RemoteAddr(), true)
		if resp == nil {
			continue
		}
		if len(resp) > 0xffff {
			s.met.droppedTooBig.Inc()
			continue
		}
		if len(resp) == 0 || &resp[0] != &out[2:3][0] {
			// The answer did not fit out: grow it.
			out = make([]byte, 2+len(resp))
			copy(out[2:], resp)
		}
		msg := out[:2+len(resp)]
		binary.BigEndian.PutUint16(msg, uint16(len(resp)))
		_ = c.SetWriteDeadline(time.Now().Add(tcpIdleTimeout))
		if _, err := c.Write(msg); err != nil {
			return
		}
	}
}
