// Package control is jitsu's control protocol: newline-delimited JSON
// requests and responses over a Unix socket, served by the daemon (Server,
// over the Daemon interface it consumes) and spoken by the CLI (Client).
//
// Each request is one JSON object on one line, answered by one JSON object on
// one line; a connection may carry several requests in turn. Every message
// carries the protocol version (Version); a server refuses a version it does
// not speak.
package control

import (
	"context"
	"errors"
	"time"
)

// Version is the protocol version spoken by this package.
const Version = 1

// DefaultSocket is the control socket's path when the config names none.
const DefaultSocket = "/run/jitsu/control.sock"

// Daemon is what the control server needs from the running daemon.
type Daemon interface {
	// Status lists every configured unikernel.
	Status(ctx context.Context) ([]UnikernelStatus, error)
	// Start boots the named unikernel now. An unknown name gives an error
	// wrapping ErrUnknown.
	Start(ctx context.Context, name string) error
	// Stop stops the named unikernel now with mode (destroy, shutdown,
	// suspend or save); "" means the unikernel's configured stop mode. An
	// unknown name gives an error wrapping ErrUnknown, an unknown mode one
	// wrapping ErrInvalid.
	Stop(ctx context.Context, name, mode string) error
	// Reload re-reads the config. An invalid new config gives an error
	// wrapping ErrConfig whose text lists the config's errors; the old
	// config then keeps running.
	Reload(ctx context.Context) error
}

// UnikernelStatus is one unikernel as the daemon sees it.
type UnikernelStatus struct {
	// Name is the unikernel's name from the config.
	Name string `json:"name"`
	// State is the summoner's state, e.g. "stopped", "starting", "ready".
	State string `json:"state"`
	// Addrs are the unikernel's IP addresses.
	Addrs []string `json:"addrs,omitempty"`
	// Since is when the unikernel entered State.
	Since time.Time `json:"since,omitzero"`
	// LastActivity is the last DNS query or packet seen for it.
	LastActivity time.Time `json:"last_activity,omitzero"`
	// Boots counts the boots since the daemon started.
	Boots int `json:"boots"`
	// LastBootDuration is the last boot's start-call-to-ready time.
	LastBootDuration time.Duration `json:"last_boot_duration_ns,omitempty"`
	// LastBoot is the timeline of the last boot, nil if it never booted.
	LastBoot *BootTimeline `json:"last_boot,omitempty"`
	// LastError is the last failure, empty if none.
	LastError string `json:"last_error,omitempty"`
}

// BootTimeline holds the instants of one boot; a zero time is unknown.
type BootTimeline struct {
	// Query is when the boot was asked for (by its trigger).
	Query time.Time `json:"query,omitzero"`
	// Trigger is what asked for it: dns, tcp, udp, control, frontdoor or group.
	Trigger string `json:"trigger,omitempty"`
	// Queued is when the boot entered the start queue (max_starting).
	Queued time.Time `json:"queued,omitzero"`
	// Start is when the hypervisor was asked to start the domain, once
	// the boot left the start queue (zero while it waits there).
	Start time.Time `json:"start,omitzero"`
	// Ready is when the readiness probe first succeeded.
	Ready time.Time `json:"ready,omitzero"`
	// FirstReplay is when the first held SYN was replayed to the guest.
	FirstReplay time.Time `json:"first_replay,omitzero"`
	// Mode is how it started: boot, warm (a warm-pool domain resumed),
	// resume (a suspended one), restore (from a managed save, stop mode
	// save), snapshot (from the save file of start = "snapshot") or
	// warm-snapshot (a warm-pool domain restored paused from that file,
	// resumed).
	Mode string `json:"mode,omitempty"`
}

// Errors crossing the wire. A Client returns errors wrapping these, so
// callers test them with errors.Is.
var (
	// ErrUnknown is an unknown unikernel name.
	ErrUnknown = errors.New("unknown unikernel")
	// ErrInvalid is a malformed request or argument (e.g. a bad stop mode).
	ErrInvalid = errors.New("invalid request")
	// ErrConfig is a reload refused because the new config is invalid.
	ErrConfig = errors.New("invalid config")
	// ErrNotRunning means no daemon listens on the socket.
	ErrNotRunning = errors.New("jitsu is not running")
	// ErrPermission means the socket exists but may not be opened.
	ErrPermission = errors.New("permission denied on the control socket")
)

// Error codes on the wire.
const (
	codeUnknown  = "unknown"
	codeInvalid  = "invalid"
	codeConfig   = "config"
	codeInternal = "internal"
	codeVersion  = "version"
)

// Operations.
const (
	opStatus = "status"
	opStart  = "start"
	opStop   = "stop"
	opReload = "reload"
)

// request is one request on the wire.
type request struct {
	V    int    `json:"v"`
	Op   string `json:"op"`
	Name string `json:"name,omitempty"`
	Mode string `json:"mode,omitempty"`
}

// response is one response on the wire.
type response struct {
	V      int               `json:"v"`
	OK     bool              `json:"ok"`
	Error  *wireError        `json:"error,omitempty"`
	Status []UnikernelStatus `json:"status,omitempty"`
}

// wireError is an error on the wire.
type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// RemoteError is an error the daemon returned. It unwraps to ErrUnknown,
// ErrInvalid or ErrConfig according to its code.
type RemoteError struct {
	// Code is the wire code: unknown, invalid, config, version or internal.
	Code string
	// Message is the daemon's error text.
	Message string
}

// Error returns the daemon's message.
func (e *RemoteError) Error() string { return e.Message }

// Unwrap maps the wire code back to its sentinel error.
func (e *RemoteError) Unwrap() error {
	switch e.Code {
	case codeUnknown:
		return ErrUnknown
	case codeInvalid, codeVersion:
		return ErrInvalid
	case codeConfig:
		return ErrConfig
	}
	return nil
}

// codeOf maps a Daemon error to its wire code.
func codeOf(err error) string {
	switch {
	case errors.Is(err, ErrUnknown):
		return codeUnknown
	case errors.Is(err, ErrInvalid):
		return codeInvalid
	case errors.Is(err, ErrConfig):
		return codeConfig
	}
	return codeInternal
}

// kindError is an error with its own text that still matches a sentinel.
type kindError struct {
	msg  string
	kind error
	err  error
}

func (e *kindError) Error() string { return e.msg }

func (e *kindError) Unwrap() []error {
	if e.err == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.err}
}
