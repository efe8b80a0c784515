package summoner

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/internal/clocktest"
)

func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// the first address refuses, the second listens
	addrs := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")}
	if err := probeTCP(ctx, RealClock(), time.Millisecond, addrs, port, 0); err != nil {
		t.Fatalf("probe of a listening port: %v", err)
	}
	_ = ln.Close()
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if err := probeTCP(short, RealClock(), time.Millisecond, addrs[1:], port, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("probe of a closed port: %v, want deadline exceeded", err)
	}
}

func TestProbeConsole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte("old boot\nJITSU-READY\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	off := consoleSize(path)
	clk := clocktest.NewFakeClock(time.Unix(0, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- probeConsole(ctx, clk, time.Millisecond, path, off, regexp.MustCompile(`^JITSU-READY$`))
	}()
	appendLine := func(s string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	step := func() {
		t.Helper()
		if err := clk.WaitPending(ctx, 1); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			t.Fatalf("probe returned early: %v", err)
		default:
		}
		clk.Advance(time.Millisecond)
	}
	step() // the old READY line does not count
	appendLine("[    0.1] booting\nJITSU-RE")
	step()
	appendLine("ADY\n")
	for { // the probe may see the line before or after its next tick
		if clk.Pending() > 0 {
			clk.Advance(time.Millisecond)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("console probe: %v", err)
			}
			return
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			t.Fatal("console probe never matched")
		}
	}
}

func TestProbeDelay(t *testing.T) {
	clk := clocktest.NewFakeClock(time.Unix(0, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := &Summoner{clock: clk}
	cfg := &Unikernel{Ready: Ready{Kind: ReadyDelay, Delay: time.Second}}
	done := make(chan error, 1)
	go func() { done <- s.probe(ctx, cfg, 0) }()
	if err := clk.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(999 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("delay probe returned early: %v", err)
	default:
	}
	clk.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConsoleTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	if consoleTail(path, 20) != nil {
		t.Fatal("tail of a missing file")
	}
	if err := os.WriteFile(path, []byte("a\r\nb\nc"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := consoleTail(path, 2)
	if len(got) != 2 || got[0] != "b" || got[1] != "c" {
		t.Fatalf("tail %q", got)
	}
}
