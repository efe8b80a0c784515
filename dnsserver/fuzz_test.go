package dnsserver

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzHandler feeds arbitrary messages to the handler, over UDP and TCP,
// on the paths that may and may not block, and its answers through the
// guard (DNS cookies and RRL, with a rate low enough that the fuzzer hits
// the slip and drop paths), from a stranger and from the zone's secondary
// (which may transfer it, with its TSIG key: over TCP the transfer path
// runs too). Answers must be well-formed responses to the query's ID;
// nothing may crash or hang. The seed corpus is testdata/fuzz/FuzzHandler
// (valid and malformed queries, with and without cookies, transfers,
// NOTIFY, UPDATE, wildcards, TSIG).
func FuzzHandler(f *testing.F) {
	s, err := New(xfrConfig(f, true, "127.0.0.2:9"), Options{
		Listen: []string{"127.0.0.1:0"}, Summoner: newFakeSummoner(),
		RRL: RRLOptions{Rate: 2, Slip: 2, Window: time.Second}, Cookies: true,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	secondary := net.IPv4(127, 0, 0, 2)
	f.Fuzz(func(t *testing.T, req []byte, tcp bool) {
		snap := s.snap.Load()
		for _, ip := range []net.IP{net.IPv4(192, 0, 2, byte(len(req))), secondary} {
			src := &net.UDPAddr{IP: ip, Port: 53}
			w := &worker{src: addrOf(src)}
			for _, mayBlock := range []bool{false, true} {
				resp, deferred := s.process(w, snap, req, tcp, mayBlock, make([]byte, 0, 512))
				resp = s.guard(w, req, resp, src, tcp)
				if deferred {
					if mayBlock {
						t.Fatal("deferred although it may block")
					}
					continue
				}
				if resp != nil {
					checkAnswer(t, req, resp, tcp)
				}
			}
		}
		if tcp {
			c := &recordConn{remote: &net.TCPAddr{IP: secondary, Port: 5353}}
			if _, err := s.serveTransfer(c, snap, req); err != nil {
				return
			}
			for b := c.out.Bytes(); len(b) > 0; {
				if len(b) < 2 || len(b) < 2+int(binary.BigEndian.Uint16(b)) {
					t.Fatalf("transfer: truncated TCP message")
				}
				n := int(binary.BigEndian.Uint16(b))
				checkAnswer(t, req, b[2:2+n], true)
				b = b[2+n:]
			}
		}
	})
}

// checkAnswer fails t unless resp is a well-formed answer to req.
func checkAnswer(t *testing.T, req, resp []byte, tcp bool) {
	t.Helper()
	var m dns.Msg
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	if !m.Response || m.RecursionAvailable || m.Id != uint16(req[0])<<8|uint16(req[1]) {
		t.Fatalf("bad answer header: %v", m.MsgHdr)
	}
	if !tcp && m.IsEdns0() == nil && len(resp) > dns.MinMsgSize {
		t.Fatalf("UDP answer of %d bytes without EDNS", len(resp))
	}
	if len(resp) > maxUDPPayload && !tcp {
		t.Fatalf("UDP answer of %d bytes", len(resp))
	}
}

// recordConn is a net.Conn that records what is written to it.
type recordConn struct {
	net.Conn
	remote net.Addr
	out    bytes.Buffer
}

func (c *recordConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *recordConn) RemoteAddr() net.Addr             { return c.remote }
func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }
