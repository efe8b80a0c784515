package libvirt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// jitsu talks to a guest's agent itself, on a virtio-serial channel of its
// own (AgentChannel), not through libvirt's guest agent support
// (virDomainSetTime on org.qemu.guest_agent.0). After a restore, libvirt
// answers "QEMU guest agent is not connected" for about a second, until
// it has seen the guest's port open again, although the restored guest's
// agent is listening from the first instruction; a snapshot start spent
// most of its time waiting for that. QEMU's end of jitsu's channel is a
// UNIX socket that libvirt names (the live domain XML says where); jitsu
// connects to it, speaks the QGA protocol (guest-sync-delimited, then
// guest-set-time) and hangs up. The guest side is the example
// unikernel's /init, which serves the port by its number (AgentPort).

// agentMaxReply bounds one reply line from the guest.
const agentMaxReply = 4 << 10

// agentMaxStale bounds what the guest may send before the reply to the
// sync (replies to an earlier connection's commands): the guest is not
// trusted to stop.
const agentMaxStale = 64 << 10

// agentSocket returns the host-side UNIX socket of the agent channel in a
// live domain XML, hypervisor.ErrNoAgent when the domain has none.
func agentSocket(domXML string) (string, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(domXML); err != nil {
		return "", fmt.Errorf("parse domain XML: %w", err)
	}
	if d.Devices == nil {
		return "", hypervisor.ErrNoAgent
	}
	for _, c := range d.Devices.Channels {
		if c.Target == nil || c.Target.VirtIO == nil || c.Target.VirtIO.Name != AgentChannel {
			continue
		}
		if c.Source == nil || c.Source.UNIX == nil || c.Source.UNIX.Path == "" {
			return "", fmt.Errorf("agent channel %s has no UNIX socket", AgentChannel)
		}
		return c.Source.UNIX.Path, nil
	}
	return "", hypervisor.ErrNoAgent
}

// agentPath reads the path of a running domain's agent socket, under ctx's
// deadline: ErrNotRunning for a domain that does not run (a paused guest
// cannot answer), ErrNoAgent for one without the channel.
func (h *Hypervisor) agentPath(ctx context.Context, name string) (string, error) {
	return callValue(h, ctx, "find the agent channel of", name, func() (string, error) {
		_, d, st, done, err := h.openDomain(ctx, "find the agent channel of", name)
		if err != nil {
			return "", err
		}
		defer done()
		switch st {
		case lv.DOMAIN_RUNNING, lv.DOMAIN_BLOCKED:
		default:
			return "", fmt.Errorf("set guest time of %q: %w", name, hypervisor.ErrNotRunning)
		}
		x, err := d.GetXMLDesc(0)
		if err != nil {
			return "", h.wrap("read the XML of", name, err)
		}
		path, err := agentSocket(x)
		if err != nil {
			return "", fmt.Errorf("set guest time of %q: %w", name, err)
		}
		return path, nil
	})
}

// agentConn is one connection to a guest agent.
type agentConn struct {
	c    net.Conn
	r    *bufio.Reader
	id   uint64
	stop func() bool // stops the watch on ctx
}

// dialAgent connects to the agent socket at path and syncs with the agent
// (guest-sync-delimited): a guest that does not answer in time gives
// hypervisor.ErrAgentUnresponsive.
func dialAgent(ctx context.Context, path string) (*agentConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect to the agent socket: %w: %w", hypervisor.ErrAgentUnresponsive, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	// A deadline in the past unblocks a read when ctx is cancelled early.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	a := &agentConn{c: c, r: bufio.NewReaderSize(c, agentMaxReply), id: uint64(time.Now().UnixNano()), stop: stop}
	if err := a.sync(); err != nil {
		a.close()
		return nil, fmt.Errorf("%w: %w", hypervisor.ErrAgentUnresponsive, err)
	}
	return a, nil
}

// sync sends 0xFF (the agent drops a partial line) and guest-sync-delimited,
// then skips what the guest sends until the reply with this id: replies to
// an earlier connection's commands may still be queued in the port.
func (a *agentConn) sync() error {
	cmd := fmt.Sprintf("\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":%d}}\n", a.id)
	if _, err := a.c.Write([]byte(cmd)); err != nil {
		return fmt.Errorf("send guest-sync-delimited: %w", err)
	}
	for stale := 0; ; {
		// The reply is preceded by 0xFF; anything before it is stale.
		for {
			b, err := a.r.ReadByte()
			if err != nil {
				return fmt.Errorf("wait for the reply to guest-sync-delimited: %w", err)
			}
			if b == 0xff {
				break
			}
			if stale++; stale > agentMaxStale {
				return fmt.Errorf("more than %d bytes before the reply to guest-sync-delimited", agentMaxStale)
			}
		}
		line, err := a.line()
		if err != nil {
			return fmt.Errorf("read the reply to guest-sync-delimited: %w", err)
		}
		var rep struct {
			Return *uint64 `json:"return"`
		}
		if json.Unmarshal(line, &rep) == nil && rep.Return != nil && *rep.Return == a.id {
			return nil
		}
		if stale += len(line) + 1; stale > agentMaxStale {
			return fmt.Errorf("more than %d bytes before the reply to guest-sync-delimited", agentMaxStale)
		}
	}
}

// line reads one reply line, bounded by agentMaxReply.
func (a *agentConn) line() ([]byte, error) {
	line, err := a.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("reply longer than %d bytes", agentMaxReply)
	}
	if err != nil {
		return nil, err
	}
	return bytes.TrimSpace(line), nil
}

// agentError is the error object of a QGA reply.
type agentError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

// do sends one command (its arguments marshalled from args) and returns an
// error if the agent answers with one.
func (a *agentConn) do(cmd string, args any) error {
	msg, err := json.Marshal(struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
	}{cmd, args})
	if err != nil {
		return fmt.Errorf("encode %s: %w", cmd, err)
	}
	if _, err := a.c.Write(append(msg, '\n')); err != nil {
		return fmt.Errorf("send %s: %w", cmd, err)
	}
	line, err := a.line()
	if err != nil {
		return fmt.Errorf("read the reply to %s: %w", cmd, err)
	}
	var rep struct {
		Return json.RawMessage `json:"return"`
		Error  *agentError     `json:"error"`
	}
	if err := json.Unmarshal(line, &rep); err != nil {
		return fmt.Errorf("reply to %s: %w", cmd, err)
	}
	if rep.Error != nil {
		return fmt.Errorf("%s: agent error %s: %s", cmd, rep.Error.Class, rep.Error.Desc)
	}
	if rep.Return == nil {
		return fmt.Errorf("reply to %s has neither return nor error: %q", cmd, line)
	}
	return nil
}

// setTime steps the guest's clock to now() (ns since the epoch), taken
// just before the command is sent.
func (a *agentConn) setTime(now func() time.Time) error {
	return a.do("guest-set-time", map[string]int64{"time": now().UnixNano()})
}

// close hangs up.
func (a *agentConn) close() {
	a.stop()
	_ = a.c.Close()
}

// setGuestTimeAt connects to the agent socket at path and sets the guest's
// clock, under ctx.
func setGuestTimeAt(ctx context.Context, path string, now func() time.Time) error {
	a, err := dialAgent(ctx, path)
	if err != nil {
		return err
	}
	defer a.close()
	return a.setTime(now)
}
