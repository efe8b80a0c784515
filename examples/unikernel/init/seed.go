package main

import (
	"archive/tar"
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The seed-file disk: jitsu packs a unikernel's `files` into a raw ustar
// image and attaches it read-only as the first virtio disk, /dev/vda. The
// kernel has no devtmpfs and no sysfs here: the device number comes from
// /proc/partitions and the node is made by hand.
const (
	seedDev      = "vda"
	seedNode     = "/dev/vda"
	seedMaxFile  = 1 << 20 // a certificate or a key, not content
	seedMaxTotal = 8 << 20
	seedCert     = "tls/cert.pem"
	seedKey      = "tls/key.pem"
)

// partitionDev finds the major and minor numbers of the block device dev
// in the text of /proc/partitions.
func partitionDev(partitions, dev string) (major, minor uint32, ok bool) {
	for _, line := range strings.Split(partitions, "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[3] != dev {
			continue
		}
		ma, err1 := strconv.ParseUint(f[0], 10, 32)
		mi, err2 := strconv.ParseUint(f[1], 10, 32)
		if err1 == nil && err2 == nil {
			return uint32(ma), uint32(mi), true
		}
	}
	return 0, 0, false
}

// errNoSeed means the VM has no seed-file disk.
var errNoSeed = errors.New("no seed-file disk")

// openSeed makes the /dev/vda node if needed and opens it.
func openSeed() (*os.File, error) {
	if _, err := os.Stat(seedNode); err != nil {
		parts, err := os.ReadFile("/proc/partitions")
		if err != nil {
			return nil, fmt.Errorf("read /proc/partitions: %w", err)
		}
		major, minor, ok := partitionDev(string(parts), seedDev)
		if !ok {
			return nil, errNoSeed
		}
		os.MkdirAll("/dev", 0o755)
		dev := int(major<<8 | minor&0xff | (minor&^0xff)<<12)
		if err := syscall.Mknod(seedNode, syscall.S_IFBLK|0o400, dev); err != nil {
			return nil, fmt.Errorf("mknod %s (%d:%d): %w", seedNode, major, minor, err)
		}
	}
	f, err := os.Open(seedNode)
	if err != nil {
		return nil, fmt.Errorf("open seed disk: %w", err)
	}
	return f, nil
}

// readSeed reads the regular files of a tar image (a raw disk: the
// archive ends at its zero blocks, the rest of the disk is ignored).
func readSeed(r io.Reader) (map[string][]byte, error) {
	tr := tar.NewReader(bufio.NewReader(r))
	files := map[string][]byte{}
	total := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return files, fmt.Errorf("read seed disk: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Size > seedMaxFile || total+int(h.Size) > seedMaxTotal {
			return files, fmt.Errorf("seed file %q: %d bytes is too large", h.Name, h.Size)
		}
		b, err := io.ReadAll(io.LimitReader(tr, h.Size))
		if err != nil {
			return files, fmt.Errorf("read seed file %q: %w", h.Name, err)
		}
		total += len(b)
		files[h.Name] = b
	}
}

// seedTLS returns the TLS configuration from the seed disk's
// tls/cert.pem and tls/key.pem, or nil when they are absent.
func seedTLS(files map[string][]byte) (*tls.Config, error) {
	cert, key := files[seedCert], files[seedKey]
	if cert == nil && key == nil {
		return nil, nil
	}
	if cert == nil || key == nil {
		return nil, fmt.Errorf("the seed disk has only one of %s and %s", seedCert, seedKey)
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("seed TLS key pair: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// bindSeedTLS opens the seed disk and, when there is one, binds port 443
// for HTTPS already (serveSeedTLS reads the certificate later); nil, nil
// without a seed disk.
func bindSeedTLS() (*os.File, net.Listener) {
	f, err := openSeed()
	if err != nil {
		if !errors.Is(err, errNoSeed) {
			logf("%v", err)
		}
		return nil, nil
	}
	ln, err := net.Listen("tcp", ":443")
	if err != nil {
		logf("listen on port 443: %v; retrying after the certificate is read", err)
		return f, nil
	}
	return f, ln
}

// serveSeedTLS serves HTTPS on ln (port 443; nil: bind it) when the seed
// disk f holds a certificate and key, and returns the TLS configuration
// it serves with; without them it closes ln and returns nil. f nil: no
// seed disk, nothing to do.
func serveSeedTLS(h http.Handler, f *os.File, ln net.Listener) *tls.Config {
	if f == nil {
		return nil
	}
	files, err := readSeed(f)
	f.Close()
	if err != nil {
		logf("%v", err)
	}
	cfg, err := seedTLS(files)
	if cfg == nil || err != nil {
		if err != nil {
			logf("%v", err)
		} else {
			logf("seed disk: %d files, no %s: HTTPS off", len(files), seedCert)
		}
		if ln != nil {
			ln.Close()
		}
		return nil
	}
	logf("seed disk: %d files; serving HTTPS on port 443", len(files))
	// The listener serves with cfg itself (ServeTLS would serve with a
	// clone), so that rotateTicketKeys reaches the live configuration.
	cfg.NextProtos = []string{"h2", "http/1.1"}
	go func() {
		for {
			if ln == nil {
				ln = listenForever(443)
			}
			srv := &http.Server{
				Handler:           h,
				TLSConfig:         cfg.Clone(), // for HTTP/2's set-up only
				ReadHeaderTimeout: 10 * time.Second,
				IdleTimeout:       60 * time.Second,
			}
			err := srv.Serve(tls.NewListener(ln, cfg))
			logf("serve HTTPS: %v; listening again", err)
			ln = nil
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return cfg
}

// rotateTicketKeys replaces the TLS session ticket keys of cfg (nil: no
// HTTPS) with a fresh one, after the RNG was re-seeded: the keys Go made
// before a snapshot are the same in every restore of it, so a ticket from
// one restore would resume a session in another. Explicit keys end Go's
// own 24-hour rotation; every later re-seed replaces them again.
func rotateTicketKeys(cfg *tls.Config) {
	if cfg == nil {
		return
	}
	k, err := newTicketKey()
	if err != nil {
		logf("new TLS session ticket key: %v", err)
		return
	}
	cfg.SetSessionTicketKeys([][32]byte{k})
}
