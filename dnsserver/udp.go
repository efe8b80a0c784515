package dnsserver

import (
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

const (
	udpBatch   = 32   // datagrams per recvmmsg/sendmmsg
	udpReadBuf = 4096 // larger queries are cut, then answered FORMERR
)

// batchConn is the batch I/O of ipv4.PacketConn and ipv6.PacketConn.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// udpListener is one UDP socket and its reader goroutines. A reader about
// to call a Summon that may block first makes sure another reader is free
// to read, so a slow Summon never stalls the socket.
type udpListener struct {
	s     *Server
	conn  *net.UDPConn
	bc    batchConn
	base  int32        // readers wanted when none is in Summon
	free  atomic.Int32 // readers not inside Summon
	total atomic.Int32
	// spareCh asks the supervisor for a spare reader.
	spareCh chan struct{}
}

func newUDPListener(s *Server, c *net.UDPConn) *udpListener {
	l := &udpListener{s: s, conn: c, spareCh: make(chan struct{}, 1)}
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		l.bc = ipv4.NewPacketConn(c)
	} else {
		l.bc = ipv6.NewPacketConn(c)
	}
	return l
}

// spawn starts one more reader. Called with s.wg held by a running reader or
// by Start.
func (l *udpListener) spawn() {
	l.total.Add(1)
	l.free.Add(1)
	l.s.wg.Add(1)
	go l.reader()
}

// spareAfter is how long a reader may be inside Summon before the rest of
// its batch is handed to goroutines and a spare reader is started.
const spareAfter = 200 * time.Microsecond

// summonBatch holds the queries of one received batch that need a Summon.
// The reader takes them one by one; if it is still busy after spareAfter,
// steal takes the rest so that no query waits for another's Summon.
type summonBatch struct {
	mu   sync.Mutex
	idx  []int
	next int
	in   []ipv4.Message
}

// take returns the next query to answer, false when none is left.
func (b *summonBatch) take() (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.next >= len(b.idx) {
		return 0, false
	}
	i := b.idx[b.next]
	b.next++
	return i, true
}

// steal answers the queries the reader has not taken yet, each in its own
// goroutine, and asks for a spare reader if none is free.
func (l *udpListener) steal(b *summonBatch) {
	type item struct {
		req  []byte
		addr net.Addr
	}
	var items []item
	b.mu.Lock()
	for _, i := range b.idx[b.next:] {
		items = append(items, item{slices.Clone(b.in[i].Buffers[0][:b.in[i].N]), b.in[i].Addr})
	}
	b.next = len(b.idx)
	b.mu.Unlock()
	if l.free.Load() <= 0 {
		select {
		case l.spareCh <- struct{}{}:
		default:
		}
	}
	s := l.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(len(items))
	s.mu.Unlock()
	for _, it := range items {
		go func() {
			defer s.wg.Done()
			w, snap := &worker{src: addrOf(it.addr)}, s.snap.Load()
			if s.hard.delay.park(snap, it.req, it.addr, l.conn) {
				return
			}
			resp, _ := s.process(w, snap, it.req, false, true, nil)
			if resp = s.guard(w, it.req, resp, it.addr, false); resp != nil {
				_, _ = l.conn.WriteTo(resp, it.addr)
			}
		}()
	}
}

// supervise starts spare readers on request, until the server closes.
func (l *udpListener) supervise() {
	defer l.s.wg.Done()
	for {
		select {
		case <-l.s.ctx.Done():
			return
		case <-l.spareCh:
			if l.free.Load() <= 0 && l.total.Load() < maxUDPReaders {
				l.spawn()
			}
		}
	}
}

// leaveSummon marks the reader free again; it reports whether the reader
// should exit because there are more free readers than wanted.
func (l *udpListener) leaveSummon() bool {
	l.free.Add(1)
	for {
		f := l.free.Load()
		if f <= l.base {
			return false
		}
		if l.free.CompareAndSwap(f, f-1) {
			l.total.Add(-1)
			return true
		}
	}
}

func (l *udpListener) reader() {
	defer l.s.wg.Done()
	s := l.s
	w := &worker{key: make([]byte, 0, 300)}
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	outBufs := make([][]byte, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, udpReadBuf)}
		outBufs[i] = make([]byte, 0, 1500)
		out[i].Buffers = make([][]byte, 1)
	}
	var deferred []int
	batch := &summonBatch{in: in}
	for {
		n, err := l.bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.total.Add(-1)
				return
			}
			s.log.Debug("udp read", zap.Error(err))
			continue
		}
		snap := s.snap.Load()
		k := 0
		deferred = deferred[:0]
		for i := range n {
			req := in[i].Buffers[0][:in[i].N]
			w.addr = in[i].Addr
			resp, def := s.process(w, snap, req, false, false, outBufs[i][:0])
			if def {
				deferred = append(deferred, i)
				continue
			}
			resp = s.guard(w, req, resp, in[i].Addr, false)
			k = l.queue(out, k, resp, in[i].Addr, outBufs, i)
		}
		l.write(out[:k])
		if len(deferred) == 0 {
			continue
		}
		batch.mu.Lock()
		batch.idx = append(batch.idx[:0], deferred...)
		batch.next = 0
		batch.mu.Unlock()
		l.free.Add(-1)
		timer := time.AfterFunc(spareAfter, func() { l.steal(batch) })
		k = 0
		for {
			i, ok := batch.take()
			if !ok {
				break
			}
			req := in[i].Buffers[0][:in[i].N]
			w.addr = in[i].Addr
			if s.hard.delay.park(snap, req, in[i].Addr, l.conn) {
				continue
			}
			resp, _ := s.process(w, snap, req, false, true, outBufs[i][:0])
			resp = s.guard(w, req, resp, in[i].Addr, false)
			k = l.queue(out, k, resp, in[i].Addr, outBufs, i)
		}
		timer.Stop()
		l.write(out[:k])
		if l.leaveSummon() {
			return
		}
	}
}

// queue adds resp for addr as out[k], keeping its buffer for reuse.
func (l *udpListener) queue(out []ipv4.Message, k int, resp []byte, addr net.Addr, bufs [][]byte, i int) int {
	if resp == nil {
		return k
	}
	if cap(resp) > cap(bufs[i]) {
		bufs[i] = resp[:0]
	}
	out[k].Buffers[0] = resp
	out[k].Addr = addr
	return k + 1
}

// write sends ms, all of them unless the socket fails.
func (l *udpListener) write(ms []ipv4.Message) {
	for len(ms) > 0 {
		n, err := l.bc.WriteBatch(ms, 0)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.s.log.Debug("udp write", zap.Error(err))
			}
			// Skip the message that failed (e.g. unreachable client).
			n++
		}
		ms = ms[min(n, len(ms)):]
	}
}
