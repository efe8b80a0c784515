package dnsserver

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzHandler feeds arbitrary messages to the handler, over UDP and TCP,
// on the paths that may and may not block, and its answers through the
// guard (DNS cookies and RRL, with a rate low enough that the fuzzer hits
// the slip and drop paths). Answers must be well-formed responses to the
// query's ID; nothing may crash or hang. The seed corpus is
// testdata/fuzz/FuzzHandler (valid and malformed queries, with and
// without cookies).
func FuzzHandler(f *testing.F) {
	s, err := New(testConfig(f), Options{
		Listen: []string{"127.0.0.1:0"}, Summoner: newFakeSummoner(),
		RRL: RRLOptions{Rate: 2, Slip: 2, Window: time.Second}, Cookies: true,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	f.Fuzz(func(t *testing.T, req []byte, tcp bool) {
		w := &worker{}
		src := &net.UDPAddr{IP: net.IPv4(192, 0, 2, byte(len(req))), Port: 53}
		snap := s.snap.Load()
		for _, mayBlock := range []bool{false, true} {
			resp, deferred := s.process(w, snap, req, tcp, mayBlock, make([]byte, 0, 512))
			resp = s.guard(w, req, resp, src, tcp)
			if deferred {
				if mayBlock {
					t.Fatal("deferred although it may block")
				}
				continue
			}
			if resp == nil {
				continue
			}
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
	})
}
