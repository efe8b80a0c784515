package libvirt

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// fakeAgent serves one connection on a UNIX socket the way the example
// unikernel's /init does, with a behaviour per test case: it records the
// time it was asked to set.
type fakeAgent struct {
	// stale is written before the reply to guest-sync-delimited, as if
	// an earlier connection's replies were still queued in the port.
	stale string
	// mute: never answer.
	mute bool
	// setErr: answer guest-set-time with this error object.
	setErr string
	got    chan int64
}

func (f *fakeAgent) serve(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimLeft(line, "\xff")
			if f.mute {
				continue
			}
			var cmd struct {
				Execute   string          `json:"execute"`
				Arguments json.RawMessage `json:"arguments"`
			}
			if err := json.Unmarshal([]byte(line), &cmd); err != nil {
				continue
			}
			switch cmd.Execute {
			case "guest-sync-delimited":
				var a struct{ ID uint64 }
				_ = json.Unmarshal(cmd.Arguments, &a)
				fmt.Fprintf(c, "%s\xff{\"return\": %d}\n", f.stale, a.ID)
			case "guest-set-time":
				var a struct{ Time int64 }
				_ = json.Unmarshal(cmd.Arguments, &a)
				if f.setErr != "" {
					fmt.Fprintf(c, "{\"error\": %s}\n", f.setErr)
					continue
				}
				f.got <- a.Time
				fmt.Fprint(c, "{\"return\": {}}\n")
			}
		}
	}()
}

// TestSetGuestTimeAt: the QGA exchange with an agent, and what a missing,
// mute or failing agent gives.
func TestSetGuestTimeAt(t *testing.T) {
	at := time.Date(2026, 12, 1, 8, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name       string
		agent      *fakeAgent // nil: no socket
		wantErr    error      // errors.Is target; nil: success
		wantErrStr string
	}{
		{name: "sets the time", agent: &fakeAgent{}},
		{name: "skips stale replies", agent: &fakeAgent{stale: "\xff{\"return\": 7}\n{\"return\": {}}\n"}},
		{name: "no socket", wantErr: hypervisor.ErrAgentUnresponsive},
		{name: "mute agent", agent: &fakeAgent{mute: true}, wantErr: hypervisor.ErrAgentUnresponsive},
		{name: "agent error", agent: &fakeAgent{setErr: `{"class": "GenericError", "desc": "settimeofday: EPERM"}`},
			wantErrStr: "agent error GenericError: settimeofday: EPERM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.sock")
			if tc.agent != nil {
				tc.agent.got = make(chan int64, 1)
				tc.agent.serve(t, path)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := setGuestTimeAt(ctx, path, func() time.Time { return at })
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			case tc.wantErrStr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErrStr) {
					t.Fatalf("err = %v, want one with %q", err, tc.wantErrStr)
				}
			default:
				if err != nil {
					t.Fatalf("setGuestTimeAt: %v", err)
				}
				if got := <-tc.agent.got; got != at.UnixNano() {
					t.Errorf("agent was told time %d, want %d", got, at.UnixNano())
				}
			}
		})
	}
}

// TestSetGuestTimeCancel: cancelling the context ends a wait for a mute
// agent before its deadline.
func TestSetGuestTimeCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	(&fakeAgent{mute: true}).serve(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	time.AfterFunc(50*time.Millisecond, cancel)
	t0 := time.Now()
	err := setGuestTimeAt(ctx, path, time.Now)
	if !errors.Is(err, hypervisor.ErrAgentUnresponsive) {
		t.Fatalf("err = %v, want ErrAgentUnresponsive", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("returned %v after the cancel, want at once", d)
	}
}

// TestAgentSocket: the socket path from a live domain XML.
func TestAgentSocket(t *testing.T) {
	chanXML := func(name, src string) string {
		return `<domain type="qemu"><name>x</name><devices><channel type="unix">` + src +
			`<target type="virtio" name="` + name + `"/></channel></devices></domain>`
	}
	tests := []struct {
		name, xml, want string
		wantErr         error
	}{
		{"jitsu's channel", chanXML(AgentChannel, `<source mode="bind" path="/var/lib/libvirt/qemu/channel/target/domain-3-x/`+AgentChannel+`"/>`),
			"/var/lib/libvirt/qemu/channel/target/domain-3-x/" + AgentChannel, nil},
		{"libvirt's agent channel only", chanXML("org.qemu.guest_agent.0", `<source mode="bind" path="/p"/>`), "", hypervisor.ErrNoAgent},
		{"no devices", `<domain type="qemu"><name>x</name></domain>`, "", hypervisor.ErrNoAgent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := agentSocket(tc.xml)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Errorf("agentSocket = %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	if _, err := agentSocket(chanXML(AgentChannel, `<source mode="bind"/>`)); err == nil {
		t.Error("a channel without a path gave no error")
	}
}

// TestSetGuestTimeFlood: a guest that sends data without end before its
// sync reply (junk, or delimited replies with other ids) is given up on,
// bounded, as unresponsive.
func TestSetGuestTimeFlood(t *testing.T) {
	for _, flood := range []string{"x", "\xff{\"return\": 7}\n"} {
		t.Run(fmt.Sprintf("%q", flood), func(t *testing.T) { testFlood(t, flood) })
	}
}

func testFlood(t *testing.T, flood string) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		junk := []byte(strings.Repeat(flood, 4096/len(flood)))
		for {
			if _, err := c.Write(junk); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = setGuestTimeAt(ctx, path, time.Now)
	if !errors.Is(err, hypervisor.ErrAgentUnresponsive) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("err = %v, want ErrAgentUnresponsive for too much data", err)
	}
}
