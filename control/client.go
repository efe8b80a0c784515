package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Client speaks the control protocol over one connection. Its methods may
// be called from several goroutines; requests are sent one at a time.
type Client struct {
	path string
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
}

// Dial connects to the daemon's control socket at path. A missing socket or
// a refused connection gives an error wrapping ErrNotRunning, a socket the
// caller may not open one wrapping ErrPermission; both say what to do.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, dialError(path, err)
	}
	return &Client{path: path, conn: c, r: bufio.NewReader(c)}, nil
}

// dialError turns a failed connect into an error an operator can act on.
func dialError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOENT):
		return &kindError{msg: fmt.Sprintf("jitsu is not running (no socket at %s)", path), kind: ErrNotRunning, err: err}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &kindError{msg: fmt.Sprintf("jitsu is not running (no socket at %s: a stale socket refuses connections)", path), kind: ErrNotRunning, err: err}
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return &kindError{msg: fmt.Sprintf("permission denied on %s: run as root or a member of %s", path, socketGroup(path)), kind: ErrPermission, err: err}
	}
	return fmt.Errorf("connect to jitsu at %s: %w", path, err)
}

// socketGroup names the group owning the socket (or its directory, if the
// socket cannot be seen), for the permission-denied message.
func socketGroup(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "the group owning it"
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "the group owning it"
	}
	gid := strconv.FormatUint(uint64(st.Gid), 10)
	name := gid
	if g, err := user.LookupGroupId(gid); err == nil {
		name = g.Name
	}
	if fi.Mode().Perm()&0o020 == 0 {
		return fmt.Sprintf("its group %q (the socket must be group-writable too: set mode = 0o660 in the config's [control])", name)
	}
	return fmt.Sprintf("its group %q", name)
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Status lists the daemon's unikernels.
func (c *Client) Status(ctx context.Context) ([]UnikernelStatus, error) {
	resp, err := c.do(ctx, request{Op: opStatus})
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	return resp.Status, nil
}

// Start boots the named unikernel now.
func (c *Client) Start(ctx context.Context, name string) error {
	if _, err := c.do(ctx, request{Op: opStart, Name: name}); err != nil {
		return fmt.Errorf("start %q: %w", name, err)
	}
	return nil
}

// Stop stops the named unikernel with mode ("" = its configured stop mode).
func (c *Client) Stop(ctx context.Context, name, mode string) error {
	if _, err := c.do(ctx, request{Op: opStop, Name: name, Mode: mode}); err != nil {
		return fmt.Errorf("stop %q: %w", name, err)
	}
	return nil
}

// Reload makes the daemon re-read its config. An invalid config gives an
// error wrapping ErrConfig with the config's errors.
func (c *Client) Reload(ctx context.Context) error {
	if _, err := c.do(ctx, request{Op: opReload}); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	return nil
}

// do sends one request and reads its response, honouring ctx.
func (c *Client) do(ctx context.Context, req request) (response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	req.V = Version
	b, err := json.Marshal(req)
	if err != nil {
		return response{}, fmt.Errorf("encode request: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
	} else {
		c.conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return response{}, c.ioError(ctx, err)
	}
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return response{}, c.ioError(ctx, err)
	}
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil {
		return response{}, fmt.Errorf("decode response: %w", err)
	}
	if resp.Error != nil {
		return resp, &RemoteError{Code: resp.Error.Code, Message: resp.Error.Message}
	}
	if !resp.OK {
		return resp, errors.New("daemon answered neither ok nor an error")
	}
	return resp, nil
}

func (c *Client) ioError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("talk to jitsu at %s: %w", c.path, ctx.Err())
	}
	return fmt.Errorf("talk to jitsu at %s: %w", c.path, err)
}
