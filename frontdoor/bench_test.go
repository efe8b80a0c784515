package frontdoor

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// rawBackend answers every connection's first request with a small fixed
// HTTP response and closes: the cheapest guest, so that the benchmark
// measures the front door's own per-connection work.
func rawBackend(tb testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				var got []byte
				for !bytes.Contains(got, []byte("\r\n\r\n")) {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					got = append(got, buf[:n]...)
				}
				c.Write(resp)
			}()
		}
	}()
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

// BenchmarkNewConnection: small GETs over new connections through the
// front door on loopback (Host routing, a fake instant summoner), the
// per-connection path accept → parse → summon → dial → replay → splice.
// Run with -cpuprofile to see what a connection costs.
func BenchmarkNewConnection(b *testing.B) {
	f := startFixture(b, rawBackend(b), nil, func(c *Config) { c.ActivityInterval = time.Second })
	req := []byte("GET / HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n")
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := net.Dial("tcp", f.httpAddr)
			if err != nil {
				b.Error(err)
				return
			}
			c.Write(req)
			body, err := io.ReadAll(c)
			c.Close()
			if err != nil || !bytes.HasSuffix(body, []byte("hello")) {
				b.Error(fmt.Errorf("response %q: %v", body, err))
				return
			}
		}
	})
}
