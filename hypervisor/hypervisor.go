// Package hypervisor declares what jitsu needs from a virtual machine
// monitor: the Hypervisor interface, the Spec of a unikernel domain, domain
// states, stop modes, lifecycle events and typed errors.
//
// It has several implementations: hypervisor/libvirt drives a real libvirtd
// (or libvirt's in-process test:///default driver), and hypervisor/hvtest is a
// scriptable fake for unit tests. Every implementation passes the same
// contract suite.
package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Spec describes one unikernel domain: what to boot and how to wire it.
type Spec struct {
	// Name is the domain name, unique per hypervisor. jitsu uses the
	// unikernel's name from the config, prefixed by the hypervisor backend
	// if it chooses to.
	Name string
	// Kernel is the path of the kernel image booted directly (bzImage,
	// vmlinux with a PVH note, or a multiboot ELF such as a Solo5 .virtio).
	Kernel string
	// Initrd is the optional initial ramdisk.
	Initrd string
	// Cmdline is the kernel command line, already expanded.
	Cmdline string
	// ReadOnlyDisks are optional raw disk images attached read-only as
	// virtio disks, before Disks (the first is the guest's /dev/vda): the
	// seed-file disk.
	ReadOnlyDisks []string
	// Disks are optional raw or qcow2 disk images attached as virtio disks.
	Disks []string
	// MemoryBytes is the guest memory size.
	MemoryBytes uint64
	// VCPUs is the number of virtual CPUs; 0 means 1.
	VCPUs int
	// Bridge is the host bridge the guest's virtio NIC is attached to.
	Bridge string
	// MAC is the guest NIC's address; nil means one derived stably from Name
	// (see NIC). jitsu always sets it (package config owns the default).
	MAC net.HardwareAddr
	// DomainType is the libvirt domain type: "kvm" on real servers, "qemu"
	// (TCG) where KVM is unusable.
	DomainType string
	// ConsoleLog is the file the serial console is written to; empty means
	// the backend's default location.
	ConsoleLog string
	// Agent gives the domain a guest agent channel (a virtio-serial port
	// that jitsu itself talks the QEMU guest agent protocol on; the libvirt
	// backend names it org.jitsu.agent.0), so that SetGuestTime can
	// correct the clock of a restored or resumed guest, which then re-seeds
	// its RNG from the virtio-rng every domain has. The guest must run an
	// agent (the example unikernel's /init does). False leaves the domain
	// without the channel.
	Agent bool
}

// StopMode says how a domain is stopped.
type StopMode string

// Stop modes.
const (
	// StopDestroy pulls the plug at once.
	StopDestroy StopMode = "destroy"
	// StopShutdown asks the guest to power off (ACPI) and destroys it if it
	// has not stopped after a timeout.
	StopShutdown StopMode = "shutdown"
	// StopSuspend pauses the vCPUs; the domain keeps its memory and a later
	// Resume continues it in milliseconds.
	StopSuspend StopMode = "suspend"
	// StopSave writes the domain's memory to disk (libvirt managed save) and
	// stops it; the next Start restores it from the save file.
	StopSave StopMode = "save"
)

// StopModes lists the stop modes. This package owns their names: the
// config file and the control socket use them as they are.
var StopModes = []StopMode{StopDestroy, StopShutdown, StopSuspend, StopSave}

// ParseStopMode parses a stop mode as written in the config.
func ParseStopMode(s string) (StopMode, error) {
	switch m := StopMode(s); m {
	case StopDestroy, StopShutdown, StopSuspend, StopSave:
		return m, nil
	}
	return "", fmt.Errorf("unknown stop mode %q (want destroy, shutdown, suspend or save)", s)
}

// State is a domain's state as the hypervisor sees it.
type State int

// Domain states.
const (
	StateUnknown State = iota
	// StateRunning: the domain runs (it may still be booting).
	StateRunning
	// StatePaused: suspended, memory kept.
	StatePaused
	// StateShutoff: defined but not running (and not saved).
	StateShutoff
	// StateSaved: not running, with a managed save image to restore.
	StateSaved
	// StateCrashed: the guest crashed.
	StateCrashed
)

var stateNames = [...]string{"unknown", "running", "paused", "shutoff", "saved", "crashed"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Domain is one of jitsu's domains as listed by the hypervisor.
type Domain struct {
	Name  string
	State State
	MAC   net.HardwareAddr
	// Started is when the domain was last started, if known.
	Started time.Time
}

// EventKind is the kind of a lifecycle event.
type EventKind int

// Lifecycle event kinds.
const (
	EventStarted EventKind = iota + 1
	EventStopped
	EventCrashed
	EventSuspended
	EventResumed
	// EventReconnected is not about one domain (Name is empty): the
	// backend has (re)connected to the hypervisor, and events may have
	// been missed meanwhile; the consumer reconciles its view with List.
	EventReconnected
)

var eventNames = [...]string{"", "started", "stopped", "crashed", "suspended", "resumed", "reconnected"}

func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a lifecycle event of one of jitsu's domains.
type Event struct {
	Name   string
	Kind   EventKind
	Time   time.Time
	Detail string // backend-specific reason, e.g. "destroyed", "panicked"
}

// Typed errors; implementations wrap them, test with errors.Is.
var (
	ErrNotFound       = errors.New("domain not found")
	ErrAlreadyRunning = errors.New("domain already running")
	ErrNotRunning     = errors.New("domain not running")
	ErrForeign        = errors.New("domain not created by jitsu")
	ErrUnavailable    = errors.New("hypervisor unavailable")
	// ErrNoAgent: the domain has no guest agent channel (Spec.Agent was
	// false), so SetGuestTime cannot reach its guest.
	ErrNoAgent = errors.New("domain has no guest agent")
	// ErrAgentUnresponsive: the domain has an agent channel, but no agent
	// answered on it (not yet opened by the guest, or the guest is busy
	// or hung); a later try may succeed.
	ErrAgentUnresponsive = errors.New("guest agent not responding")
)

// Hypervisor starts, stops and watches jitsu's domains. All methods are
// safe for concurrent use.
type Hypervisor interface {
	// Start boots the domain described by spec. If a managed save image
	// exists for it, the domain is restored from it instead. It returns once
	// the hypervisor has started the domain, not when the guest is ready.
	// A running domain gives ErrAlreadyRunning; a paused one is resumed.
	Start(ctx context.Context, spec Spec) error
	// Prepare creates the domain described by spec paused before its
	// guest runs any instruction (libvirt's start-paused flag: the
	// hypervisor process started, firmware and kernel loaded): a warm
	// domain, listed as StatePaused. Start or Resume then runs it. A
	// domain that runs or is paused already gives ErrAlreadyRunning; one
	// with a managed save image is restored paused.
	Prepare(ctx context.Context, spec Spec) error
	// Stop stops a running or paused domain with mode.
	Stop(ctx context.Context, name string, mode StopMode) error
	// Resume continues a paused domain.
	Resume(ctx context.Context, name string) error
	// State reports a domain's state; ErrNotFound if jitsu has no such domain.
	State(ctx context.Context, name string) (State, error)
	// List returns jitsu's domains only, never foreign ones.
	List(ctx context.Context) ([]Domain, error)
	// DiscardSave removes the domain's managed save image, so that its
	// next Start boots afresh; a domain without one is left as it is (nil).
	// ErrNotFound if jitsu has no such domain.
	DiscardSave(ctx context.Context, name string) error
	// SaveSnapshot writes the running domain's memory and device state to
	// the file at path (an external save file, not a managed save image)
	// and stops the domain: a transient domain is gone afterwards. The
	// file is the caller's: RestoreSnapshot keeps it. ErrNotRunning if
	// the domain does not run; ErrNotFound if jitsu has no such domain.
	SaveSnapshot(ctx context.Context, name, path string) error
	// RestoreSnapshot starts spec's domain from the save file at path,
	// running, and keeps the file, so that it can be restored again. The
	// domain gets the configuration it was saved with: the caller makes
	// sure the file was saved from the same spec. It returns once the
	// domain runs. ErrAlreadyRunning if the domain runs or is paused; an
	// unreadable or incompatible file gives another error (the caller
	// discards the file and boots).
	RestoreSnapshot(ctx context.Context, spec Spec, path string) error
	// PrepareSnapshot is RestoreSnapshot with the domain left paused: a
	// warm domain (StatePaused) whose guest continues from the save when
	// Resume runs it. Its clock is behind by the time since the save
	// until SetGuestTime.
	PrepareSnapshot(ctx context.Context, spec Spec, path string) error
	// SetGuestTime sets the running guest's clock to the host's current
	// time through its guest agent, which also re-seeds the guest's RNG
	// (see docs/boot.md): call it after a restore or a resume, before the
	// guest serves clients. A domain without an agent gives ErrNoAgent, an
	// agent that does not answer ErrAgentUnresponsive, a domain that is
	// not running (paused included) ErrNotRunning.
	SetGuestTime(ctx context.Context, name string) error
	// Events delivers lifecycle events of jitsu's domains. The channel is
	// closed by Close.
	Events() <-chan Event
	// Close releases the connection and stops the event goroutines.
	Close() error
}

// InterfaceStats are a domain NIC's traffic counters, as seen from the host.
type InterfaceStats struct {
	RxBytes, TxBytes, RxPackets, TxPackets uint64
}

// StatsReader is implemented by hypervisors that can report a domain's
// interface counters; the summoner uses it to see traffic for idle-out.
type StatsReader interface {
	InterfaceStats(ctx context.Context, name string) (InterfaceStats, error)
}

// NIC returns the guest NIC's address: MAC, or DeriveMAC(Name) when MAC is
// nil. Every backend takes a spec's MAC from here.
func (s Spec) NIC() net.HardwareAddr {
	if len(s.MAC) != 0 {
		return s.MAC
	}
	return DeriveMAC(s.Name)
}

// DeriveMAC returns a stable locally administered unicast MAC for name, with
// the 52:54:00 prefix QEMU uses, so that the same unikernel keeps its MAC
// across boots and restarts of jitsu. It is config.DeriveMAC (jitsu's
// configs always set Spec.MAC); this one serves other users of the backends.
func DeriveMAC(name string) net.HardwareAddr {
	// FNV-1a, 32 bit.
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return net.HardwareAddr{0x52, 0x54, 0x00, byte(h >> 16), byte(h >> 8), byte(h)}
}
