package dnsserver

import (
	"net/netip"
	"testing"
)

// TestNotifySource: NOTIFY leaves from the first listen address of the
// secondary's family whose loopbackness matches, so that a jitsu listening
// on 127.0.0.1 first and on its public address second notifies a remote
// secondary from the public address (a loopback source cannot reach it).
func TestNotifySource(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen []string
		dst    string
		want   string // "" : invalid, the kernel chooses
	}{
		{"remote after loopback", []string{"127.0.0.1:5353", "10.214.0.1:5353"}, "10.214.0.2", "10.214.0.1"},
		{"remote first", []string{"10.214.0.1:53", "127.0.0.1:53"}, "10.214.0.2", "10.214.0.1"},
		{"remote, loopback only", []string{"127.0.0.1:53"}, "192.0.2.53", ""},
		{"loopback secondary", []string{"10.214.0.1:53", "127.0.0.1:53"}, "127.0.0.2", "127.0.0.1"},
		{"loopback secondary, no loopback listen", []string{"10.214.0.1:53"}, "127.0.0.2", "10.214.0.1"},
		{"wildcard skipped", []string{"0.0.0.0:53", "192.0.2.1:53"}, "192.0.2.53", "192.0.2.1"},
		{"wildcard only", []string{"[::]:53"}, "2001:db8::53", ""},
		{"other family skipped", []string{"[2001:db8::1]:53", "192.0.2.1:53"}, "192.0.2.53", "192.0.2.1"},
		{"IPv6 after loopback", []string{"[::1]:53", "[2001:db8::1]:53"}, "2001:db8::53", "2001:db8::1"},
		{"mapped secondary", []string{"127.0.0.1:53", "192.0.2.1:53"}, "::ffff:192.0.2.53", "192.0.2.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{opts: Options{Listen: tc.listen}}
			got := s.notifySource(netip.MustParseAddr(tc.dst))
			if tc.want == "" {
				if got.IsValid() {
					t.Errorf("notifySource(%s) = %s, want none (the kernel chooses)", tc.dst, got)
				}
				return
			}
			if got != netip.MustParseAddr(tc.want) {
				t.Errorf("notifySource(%s) = %s, want %s", tc.dst, got, tc.want)
			}
		})
	}
}
