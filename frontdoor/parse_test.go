package frontdoor

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// clientHello returns the first flight a real crypto/tls client sends for
// serverName: its ClientHello in one record.
func clientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		c := tls.Client(a, &tls.Config{ServerName: serverName, InsecureSkipVerify: serverName == ""})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.HandshakeContext(ctx) // fails when b closes
	}()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := readFull(b, hdr); err != nil {
		t.Fatalf("read ClientHello record header: %v", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := readFull(b, body); err != nil {
		t.Fatalf("read ClientHello record: %v", err)
	}
	return append(hdr, body...)
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// fragment re-packs the handshake bytes of the records in hello into
// records of at most size payload bytes each.
func fragment(hello []byte, size int) []byte {
	var hs []byte
	for len(hello) >= 5 {
		n := int(hello[3])<<8 | int(hello[4])
		hs = append(hs, hello[5:5+n]...)
		hello = hello[5+n:]
	}
	var out []byte
	for len(hs) > 0 {
		n := min(size, len(hs))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, hs[:n]...)
		hs = hs[n:]
	}
	return out
}

func TestParseSNI(t *testing.T) {
	hello := clientHello(t, "Blog.Example.Test")
	noSNI := clientHello(t, "")
	tests := []struct {
		name string
		in   []byte
		max  int
		want string
		err  error
	}{
		{"real client", hello, 16384, "blog.example.test", nil},
		{"records of 1 byte", fragment(hello, 1), 16384, "blog.example.test", nil},
		{"records of 7 bytes", fragment(hello, 7), 16384, "blog.example.test", nil},
		{"no SNI", noSNI, 16384, "", ErrNoSNI},
		{"truncated", hello[:len(hello)-1], 16384, "", ErrMalformed},
		{"over the cap", hello, 100, "", ErrTooLarge},
		{"1-byte records over the cap", fragment(hello, 1), 1024, "", ErrTooLarge},
		{"HTTP", []byte("GET / HTTP/1.1\r\n\r\n"), 16384, "", ErrNotTLS},
		{"SSLv2-ish", []byte{0x80, 0x2e, 1, 3, 1}, 16384, "", ErrNotTLS},
		{"alert record", []byte{21, 3, 3, 0, 2, 2, 40}, 16384, "", ErrNotTLS},
		{"zero-length record", []byte{22, 3, 1, 0, 0}, 16384, "", ErrMalformed},
		{"not a ClientHello", []byte{22, 3, 1, 0, 4, 2, 0, 0, 0}, 16384, "", ErrMalformed},
		{"empty", nil, 16384, "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSNI(tt.in, tt.max)
			if got != tt.want || !errors.Is(err, tt.err) && !(err == nil && tt.err == nil) {
				t.Errorf("ParseSNI = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// TestSNIIncremental feeds a ClientHello one byte at a time: the parser
// asks for more until the last byte, then answers.
func TestSNIIncremental(t *testing.T) {
	for _, in := range [][]byte{clientHello(t, "www.example.test"), fragment(clientHello(t, "www.example.test"), 3)} {
		p := sniParser{max: 16384}
		feedIncrementally(t, p.feed, in, "www.example.test")
	}
}

func TestParseHost(t *testing.T) {
	long := "GET / HTTP/1.1\r\nHost: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"
	tests := []struct {
		name, in string
		max      int
		want     string
		err      error
	}{
		{"simple", "GET / HTTP/1.1\r\nHost: WWW.Example.Test\r\n\r\n", 8192, "www.example.test", nil},
		{"port and dot", "GET / HTTP/1.1\r\nUser-Agent: x\r\nhost:  www.example.test.:8080 \r\nAccept: */*\r\n\r\n", 8192, "www.example.test", nil},
		{"bare LF", "GET / HTTP/1.0\nHost: a.example\n\n", 8192, "a.example", nil},
		{"absolute form wins", "GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", 8192, "b.example", nil},
		{"body follows", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\n\r\nbody", 8192, "a.example", nil},
		{"no host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 8192, "", ErrNoHost},
		{"HTTP/1.0 without host", "GET / HTTP/1.0\r\n\r\n", 8192, "", ErrNoHost},
		{"IP literal", "GET / HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n", 8192, "", ErrNoHost},
		{"IPv6 literal", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", 8192, "", ErrNoHost},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", 8192, "", ErrMalformed},
		{"bad name", "GET / HTTP/1.1\r\nHost: a..example\r\n\r\n", 8192, "", ErrMalformed},
		{"bad byte", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 8192, "", ErrMalformed},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 8192, "", ErrMalformed},
		{"TLS", string(clientHello(t, "a.example")), 8192, "", ErrMalformed},
		{"64 KiB host line", long, 8192, "", ErrTooLarge},
		{"truncated", "GET / HTTP/1.1\r\nHost: a.example\r\n", 8192, "", ErrMalformed},
		{"header without colon", "GET / HTTP/1.1\r\nHost a.example\r\n\r\n", 8192, "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseHost([]byte(tt.in), tt.max)
			if got != tt.want || !errors.Is(err, tt.err) && !(err == nil && tt.err == nil) {
				t.Errorf("ParseHost = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestHostIncremental(t *testing.T) {
	in := []byte("GET /index.html HTTP/1.1\r\nHost: www.example.test\r\nAccept: */*\r\n\r\n")
	p := hostParser{max: 8192}
	feedIncrementally(t, p.feed, in, "www.example.test")
}

// feedIncrementally feeds in one more byte at a time: feed must ask for
// more until the last byte, then answer want.
func feedIncrementally(t *testing.T, feed func([]byte) (string, error), in []byte, want string) {
	t.Helper()
	for i := 1; i <= len(in); i++ {
		name, err := feed(in[:i])
		if i < len(in) {
			if !errors.Is(err, errNeedMore) {
				t.Fatalf("after %d of %d bytes: %q, %v; want errNeedMore", i, len(in), name, err)
			}
			continue
		}
		if err != nil || name != want {
			t.Fatalf("complete: %q, %v", name, err)
		}
	}
}

func TestProxyHeader(t *testing.T) {
	h := proxyHeader(mustAP("192.0.2.1:40000"), mustAP("[::ffff:203.0.113.10]:443"))
	want := append(append([]byte(nil), proxySignature...), 0x21, 0x11, 0, 12,
		192, 0, 2, 1, 203, 0, 113, 10, 0x9c, 0x40, 0x01, 0xbb)
	if !bytes.Equal(h, want) {
		t.Errorf("IPv4 header\n got %x\nwant %x", h, want)
	}
	h6 := proxyHeader(mustAP("[2001:db8::1]:1"), mustAP("[2001:db8::2]:2"))
	if len(h6) != 16+36 || h6[13] != 0x21 || h6[15] != 36 {
		t.Errorf("IPv6 header %x", h6)
	}
}

// outcome is a parse result reduced for comparison.
func outcome(name string, err error) string {
	for _, e := range []error{ErrNotTLS, ErrNoSNI, ErrNoHost, ErrTooLarge, ErrMalformed} {
		if errors.Is(err, e) {
			return "error: " + e.Error()
		}
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return "name: " + name
}

// FuzzParseSNI: no panic, names are valid, and feeding the bytes in any
// split gives the one-shot answer.
func FuzzParseSNI(f *testing.F) {
	f.Add(clientHello(f, "blog.example.test"), uint8(1))
	f.Add(fragment(clientHello(f, "a.example"), 5), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		const max = 4096
		name, err := ParseSNI(data, max)
		if err == nil {
			if n, cerr := checkName(name); cerr != nil || n != name {
				t.Fatalf("returned name %q does not check: %v", name, cerr)
			}
		}
		p := sniParser{max: max}
		if len(data) > max {
			data = data[:max]
		}
		n2, err2 := feedSplit(p.feed, data, step)
		if outcome(name, err) != outcome(n2, err2) {
			t.Fatalf("one-shot %s, incremental %s", outcome(name, err), outcome(n2, err2))
		}
	})
}

// feedSplit feeds data step+1 more bytes at a time until feed answers or
// data ends (then: ErrMalformed, as the one-shot parsers say).
func feedSplit(feed func([]byte) (string, error), data []byte, step uint8) (string, error) {
	var name string
	err := errNeedMore
	for i := 0; i < len(data) && errors.Is(err, errNeedMore); {
		i = min(i+int(step)+1, len(data))
		name, err = feed(data[:i])
	}
	if errors.Is(err, errNeedMore) {
		err = ErrMalformed
	}
	return name, err
}

// FuzzParseHost: no panic, names are valid, and feeding the bytes in any
// split gives the one-shot answer.
func FuzzParseHost(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n"), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		const max = 2048
		name, err := ParseHost(data, max)
		if err == nil {
			if n, cerr := checkName(name); cerr != nil || n != name {
				t.Fatalf("returned name %q does not check: %v", name, cerr)
			}
		}
		p := hostParser{max: max}
		n2, err2 := feedSplit(p.feed, data, step)
		if outcome(name, err) != outcome(n2, err2) {
			t.Fatalf("one-shot %s, incremental %s", outcome(name, err), outcome(n2, err2))
		}
	})
}
