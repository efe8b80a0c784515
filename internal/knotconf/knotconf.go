// Package knotconf writes the configuration of a knotd secondary of jitsu,
// for the tests that check jitsu's zone transfers against a real knotd.
package knotconf

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

// Secondary is a knotd that transfers one zone from jitsu and takes
// NOTIFY from it.
type Secondary struct {
	// Dir is knotd's run directory, database and zone file directory.
	Dir string
	// IP and Port are what knotd listens on.
	IP   string
	Port int
	// Zone is the zone's name, with its final dot.
	Zone string
	// Primary is jitsu's address, "host:port"; NOTIFY is accepted from its
	// host.
	Primary string
	// Via, when set, is the source address of knotd's transfers.
	Via string
	// Key and Secret, when Key is set, are the TSIG key (hmac-sha256,
	// Secret in base64) that signs transfers and NOTIFY.
	Key, Secret string
}

// Conf returns knot.conf for s.
func (s Secondary) Conf() (string, error) {
	host, port, err := net.SplitHostPort(s.Primary)
	if err != nil {
		return "", fmt.Errorf("knotd secondary: primary %q: %w", s.Primary, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `server:
    rundir: %q
    listen: %s@%d
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: info
database:
    storage: %q
`, s.Dir, s.IP, s.Port, s.Dir)
	if s.Key != "" {
		fmt.Fprintf(&b, "key:\n  - id: %s\n    algorithm: hmac-sha256\n    secret: %s\n", s.Key, s.Secret)
	}
	fmt.Fprintf(&b, "remote:\n  - id: jitsu\n    address: %s@%s\n", host, port)
	if s.Via != "" {
		fmt.Fprintf(&b, "    via: %s\n", s.Via)
	}
	s.keyLine(&b)
	fmt.Fprintf(&b, "acl:\n  - id: notify_from_jitsu\n    address: %s\n", host)
	s.keyLine(&b)
	fmt.Fprintf(&b, `    action: notify
zone:
  - domain: %s
    master: jitsu
    acl: notify_from_jitsu
    file: %q
    zonefile-sync: -1
    zonefile-load: none
    journal-content: changes
`, s.Zone, filepath.Join(s.Dir, strings.TrimSuffix(s.Zone, ".")+".zone"))
	return b.String(), nil
}

// keyLine writes the key line of a remote or acl when s has a key.
func (s Secondary) keyLine(b *strings.Builder) {
	if s.Key != "" {
		fmt.Fprintf(b, "    key: %s\n", s.Key)
	}
}
