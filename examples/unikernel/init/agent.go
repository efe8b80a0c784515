package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// A minimal QEMU guest agent: it speaks the QGA protocol (one JSON
// command per line in, one JSON reply per line out) on the virtio-serial
// port org.jitsu.agent.0, which jitsu's domains have when their spec asks
// for an agent (hypervisor Spec.Agent). jitsu itself is the host side (not
// libvirt, which only knows org.qemu.guest_agent.0 and, after a restore,
// takes about a second to see the port open again). The agent exists for
// one command, guest-set-time, which jitsu sends after a restore or a
// resume: it steps the clock to the host's, then re-seeds the kernel
// CRNG from the host (virtio-rng) and rotates the TLS session ticket keys,
// because a restored guest's RNG state is the same on every restore.
//
// What jitsu sends (hypervisor/libvirt agent.go) on each connection: a
// 0xFF byte and
//
//	{"execute":"guest-sync-delimited", "arguments":{"id":N}}
//
// answered by 0xFF {"return": N}, then
// the command, e.g. {"execute":"guest-set-time","arguments":{"time":NS}}
// with NS in nanoseconds since the epoch, answered by {"return": {}}.
// libvirt's guest-sync (the same reply without the 0xFF byte), guest-ping,
// guest-info and guest-get-time are answered too; any other command gets
// a CommandNotFound error object. A 0xFF byte from the host discards the
// partial line (QGA's parser reset). Malformed lines and lines over
// agentMaxLine are dropped and counted in the kernel log, unanswered.
//
// The agent never polls: it blocks in read(2) on the port, and while no
// host is connected (the port reads end-of-file then) it waits for the
// SIGIO the kernel sends when the host side opens.
const (
	agentChannel = "org.jitsu.agent.0"
	// agentPort is the port number of the agent channel in jitsu's domain
	// XML (hypervisor/libvirt AgentPort): the minor of its device node.
	// Without sysfs the port's name cannot be read, so the number is the
	// contract.
	agentPort = 1
	// agentNode is where the port's device node is made (udev's name).
	agentNode = "/dev/virtio-ports/" + agentChannel
	// agentMaxLine bounds one command line; libvirt's are under 200 bytes.
	agentMaxLine = 8 << 10
	// agentOpenTries bounds the waits for the port to appear after boot
	// (the host announces ports through control messages, possibly a
	// little after /init starts), with doubling delays from 20 ms.
	agentOpenTries = 10
	// reseedBytes is how much the CRNG is fed from the host per re-seed.
	reseedBytes = 64
	hwrngNode   = "/dev/hwrng"
	urandomNode = "/dev/urandom"
	agentVer    = "jitsu-init-1"
)

// Linux ioctls of the random device (include/uapi/linux/random.h).
const (
	rndAddEntropy  = 0x40085203 // _IOW('R', 0x03, int[2])
	rndReseedCRNG  = 0x5207     // _IO('R', 0x07)
	hwrngMajor     = 10         // misc
	hwrngMinor     = 183        // HWRNG_MINOR
	urandomMajor   = 1
	urandomMinor   = 9
	portsDevDriver = "virtio-portsdev"
)

// agent is the protocol state and its effects, injected for tests.
type agent struct {
	// setClock steps the wall clock to ns since the epoch.
	setClock func(ns int64) error
	// reseed re-seeds the RNGs after a clock step (a restore or resume).
	reseed func() error
	// now reads the wall clock (guest-get-time).
	now func() time.Time
	// log writes a line to the kernel log.
	log func(format string, args ...any)

	clockSets atomic.Int64 // guest-set-time commands applied
	malformed atomic.Int64 // lines dropped
}

// qgaRequest is one command.
type qgaRequest struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

// qgaError is QGA's error object.
type qgaError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

// agentCommands are the commands answered, for guest-info.
var agentCommands = []string{"guest-sync", "guest-sync-delimited", "guest-ping", "guest-info", "guest-get-time", "guest-set-time"}

// drop counts a malformed line and logs it, at 1, 2, 4, 8... drops so
// that a flood of garbage cannot flood the log.
func (a *agent) drop(why string) {
	n := a.malformed.Add(1)
	if n&(n-1) == 0 {
		a.log("jitsu-init: agent: dropped malformed input (%s); %d dropped so far", why, n)
	}
}

// handle answers one line; nil means no answer (a malformed line).
func (a *agent) handle(line []byte) []byte {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil
	}
	var req qgaRequest
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil || dec.More() {
		a.drop("not one JSON object")
		return nil
	}
	if req.Execute == "" {
		a.drop("no execute member")
		return nil
	}
	ret, qerr, prefix := a.execute(req)
	reply := map[string]any{}
	if qerr != nil {
		reply["error"] = qerr
	} else {
		reply["return"] = ret
	}
	if len(req.ID) > 0 {
		reply["id"] = req.ID
	}
	b, err := json.Marshal(reply)
	if err != nil {
		a.drop("unencodable reply")
		return nil
	}
	out := append(prefix, b...)
	return append(out, '\n')
}

// execute runs one command: its return value or error, and the bytes to
// send before the reply (the 0xFF sentinel of guest-sync-delimited).
func (a *agent) execute(req qgaRequest) (ret any, qerr *qgaError, prefix []byte) {
	switch req.Execute {
	case "guest-sync", "guest-sync-delimited":
		var args struct {
			ID json.Number `json:"id"`
		}
		if err := decodeArgs(req.Arguments, &args); err != nil || !isInteger(args.ID) {
			return nil, &qgaError{"GenericError", "guest-sync needs an integer id"}, nil
		}
		if req.Execute == "guest-sync-delimited" {
			prefix = []byte{0xff}
		}
		return json.RawMessage(args.ID), nil, prefix
	case "guest-ping":
		return struct{}{}, nil, nil
	case "guest-info":
		type cmd struct {
			Name    string `json:"name"`
			Enabled bool   `json:"enabled"`
			Success bool   `json:"success-response"`
		}
		cmds := make([]cmd, len(agentCommands))
		for i, c := range agentCommands {
			cmds[i] = cmd{c, true, true}
		}
		return map[string]any{"version": agentVer, "supported_commands": cmds}, nil, nil
	case "guest-get-time":
		return a.now().UnixNano(), nil, nil
	case "guest-set-time":
		return a.setTime(req.Arguments)
	}
	return nil, &qgaError{"CommandNotFound", fmt.Sprintf("The command %s has not been found", req.Execute)}, nil
}

// setTime is guest-set-time: step the clock, then re-seed.
func (a *agent) setTime(raw json.RawMessage) (any, *qgaError, []byte) {
	var args struct {
		Time *json.Number `json:"time"`
	}
	if err := decodeArgs(raw, &args); err != nil {
		return nil, &qgaError{"GenericError", "guest-set-time: " + err.Error()}, nil
	}
	if args.Time == nil {
		// QGA would copy the hardware clock (hwclock -s); this guest has
		// no RTC driver, and libvirt always sends a time unless asked to
		// sync.
		return nil, &qgaError{"Unsupported", "guest-set-time without time: no RTC in this guest"}, nil
	}
	ns, err := strconv.ParseInt(args.Time.String(), 10, 64)
	if err != nil || ns <= 0 {
		return nil, &qgaError{"GenericError", "guest-set-time: time must be a positive integer (ns since the epoch)"}, nil
	}
	before := a.now()
	if err := a.setClock(ns); err != nil {
		return nil, &qgaError{"GenericError", "set the clock: " + err.Error()}, nil
	}
	a.clockSets.Add(1)
	a.log("jitsu-init: agent: clock stepped by %v", time.Unix(0, ns).Sub(before).Round(time.Millisecond))
	if err := a.reseed(); err != nil {
		// The clock is set; say what failed, the host logs it.
		return nil, &qgaError{"GenericError", "clock set, re-seed failed: " + err.Error()}, nil
	}
	return struct{}{}, nil, nil
}

// decodeArgs decodes a command's arguments (absent means empty), refusing
// unknown members as QGA does.
func decodeArgs(raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func isInteger(n json.Number) bool {
	if _, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
		return true
	}
	_, err := strconv.ParseUint(n.String(), 10, 64)
	return err == nil
}

// lineReader splits the byte stream into lines of at most agentMaxLine
// bytes. A 0xFF byte discards the partial line; an over-long line is
// dropped up to its newline.
type lineReader struct {
	buf      []byte
	overflow bool
}

// feed adds p and calls line for every complete line, and drop for every
// discarded one.
func (r *lineReader) feed(p []byte, line func([]byte), drop func(string)) {
	if r.buf == nil {
		r.buf = make([]byte, 0, agentMaxLine) // never grows past this
	}
	for _, c := range p {
		switch {
		case c == 0xff:
			if len(r.buf) > 0 || r.overflow {
				drop("0xFF reset inside a line")
			}
			r.buf, r.overflow = r.buf[:0], false
		case c == '\n':
			if r.overflow {
				drop(fmt.Sprintf("line over %d bytes", agentMaxLine))
			} else {
				line(r.buf)
			}
			r.buf, r.overflow = r.buf[:0], false
		case r.overflow:
		case len(r.buf) >= agentMaxLine:
			r.overflow, r.buf = true, r.buf[:0]
		default:
			r.buf = append(r.buf, c)
		}
	}
}

// agentCounters are read by the /.jitsu/now handler; nil until the agent
// runs.
var agentCounters atomic.Pointer[agent]

// startAgent runs the agent in the background when the VM has the agent
// port; rotate is called after every re-seed (TLS ticket keys).
func startAgent(rotate func()) {
	a := &agent{
		setClock: func(ns int64) error {
			tv := syscall.NsecToTimeval(ns)
			return syscall.Settimeofday(&tv)
		},
		now: time.Now,
		log: kmsgAndConsole,
	}
	a.reseed = func() error {
		if err := reseedCRNG(); err != nil {
			return err
		}
		if rotate != nil {
			rotate()
		}
		return nil
	}
	agentCounters.Store(a)
	go func() {
		defer func() {
			// The agent must never take PID 1 down.
			if r := recover(); r != nil {
				kmsgAndConsole("jitsu-init: agent: stopped after panic: %v", r)
			}
		}()
		fd, err := openAgentPort()
		if errors.Is(err, errNoAgent) {
			return
		}
		if err != nil {
			kmsgAndConsole("jitsu-init: agent: %v", err)
			return
		}
		a.serve(fd)
	}()
}

var errNoAgent = errors.New("no virtio-serial device")

// openAgentPort makes the agent port's device node and opens it.
func openAgentPort() (int, error) {
	devs, err := os.ReadFile("/proc/devices")
	if err != nil {
		return -1, fmt.Errorf("read /proc/devices: %w", err)
	}
	major, ok := charMajor(string(devs), portsDevDriver)
	if !ok {
		return -1, errNoAgent
	}
	if err := mkchar(agentNode, major, agentPort); err != nil {
		return -1, err
	}
	delay := 20 * time.Millisecond
	for i := 0; ; i++ {
		fd, err := syscall.Open(agentNode, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
		if err == nil {
			return fd, nil
		}
		// ENXIO: the host has not announced the port (yet).
		if i == agentOpenTries {
			return -1, fmt.Errorf("open %s (%d:%d): %w", agentNode, major, agentPort, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, time.Second)
	}
}

// charMajor finds a character device driver's major number in the text
// of /proc/devices.
func charMajor(devices, driver string) (uint32, bool) {
	inChar := false
	for _, line := range strings.Split(devices, "\n") {
		switch strings.TrimSpace(line) {
		case "Character devices:":
			inChar = true
			continue
		case "Block devices:":
			inChar = false
			continue
		}
		f := strings.Fields(line)
		if !inChar || len(f) != 2 || f[1] != driver {
			continue
		}
		if n, err := strconv.ParseUint(f[0], 10, 32); err == nil {
			return uint32(n), true
		}
	}
	return 0, false
}

// mkchar makes a character device node unless path exists.
func mkchar(path string, major, minor uint32) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(path[:strings.LastIndexByte(path, '/')], 0o755); err != nil {
		return fmt.Errorf("make the directory of %s: %w", path, err)
	}
	dev := int(major<<8 | minor&0xff | (minor&^0xff)<<12)
	if err := syscall.Mknod(path, syscall.S_IFCHR|0o600, dev); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("mknod %s (%d:%d): %w", path, major, minor, err)
	}
	return nil
}

// serve reads commands from the port forever. A read of 0 bytes means no
// host is connected: it waits for SIGIO (sent when the host opens the
// port or data arrives), never polling.
func (a *agent) serve(fd int) {
	sigio := make(chan os.Signal, 1)
	signal.Notify(sigio, syscall.SIGIO)
	if err := asyncOwner(fd); err != nil {
		kmsgAndConsole("jitsu-init: agent: %v (the agent wakes only on data)", err)
	}
	kmsgAndConsole("jitsu-init: agent: listening on %s", agentNode)
	buf := make([]byte, 4096)
	var lr lineReader
	for {
		n, err := syscall.Read(fd, buf)
		switch {
		case err == syscall.EINTR || err == syscall.EAGAIN:
			continue
		case err != nil:
			kmsgAndConsole("jitsu-init: agent: read: %v", err)
			select {
			case <-sigio:
			case <-time.After(10 * time.Second):
			}
			continue
		case n == 0:
			<-sigio
			continue
		}
		lr.feed(buf[:n], func(line []byte) {
			if reply := a.handle(line); reply != nil {
				writeAll(fd, reply)
			}
		}, a.drop)
	}
}

// asyncOwner makes the kernel send SIGIO to this process for fd.
func asyncOwner(fd int) error {
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETOWN, uintptr(os.Getpid())); e != 0 {
		return fmt.Errorf("F_SETOWN: %w", e)
	}
	fl, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
	if e != 0 {
		return fmt.Errorf("F_GETFL: %w", e)
	}
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETFL, fl|syscall.O_ASYNC); e != 0 {
		return fmt.Errorf("F_SETFL O_ASYNC: %w", e)
	}
	return nil
}

func writeAll(fd int, b []byte) {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			kmsgAndConsole("jitsu-init: agent: write reply: %v", err)
			return
		}
		b = b[n:]
	}
}

// reseedCRNG feeds reseedBytes from the host (virtio-rng, /dev/hwrng)
// into the kernel's entropy pool and forces a CRNG re-seed, so that the
// kernel's random numbers (getrandom, hence Go's crypto/rand) differ
// from those of every other restore of the same snapshot.
func reseedCRNG() error {
	if err := mkchar(hwrngNode, hwrngMajor, hwrngMinor); err != nil {
		return err
	}
	if err := mkchar(urandomNode, urandomMajor, urandomMinor); err != nil {
		return err
	}
	seed := make([]byte, reseedBytes)
	hw, err := os.Open(hwrngNode)
	if err != nil {
		return fmt.Errorf("open %s: %w", hwrngNode, err)
	}
	_, err = readFull(hw, seed)
	hw.Close()
	if err != nil {
		return fmt.Errorf("read %s (virtio-rng): %w", hwrngNode, err)
	}
	ur, err := os.OpenFile(urandomNode, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", urandomNode, err)
	}
	defer ur.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(seed))
	putInt32(info[0:], int32(8*len(seed))) // entropy credited, in bits
	putInt32(info[4:], int32(len(seed)))
	copy(info[8:], seed)
	fd := ur.Fd()
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, rndAddEntropy, uintptr(unsafe.Pointer(&info[0]))); e != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", e)
	}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, rndReseedCRNG, 0); e != 0 {
		return fmt.Errorf("RNDRESEEDCRNG: %w", e)
	}
	return nil
}

func readFull(f *os.File, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := f.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func putInt32(b []byte, v int32) {
	// Native endianness: amd64 is little-endian.
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// kmsgAndConsole writes a line to the kernel log (/dev/kmsg) and the
// console.
func kmsgAndConsole(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stdout, line)
	if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		f.WriteString(line + "\n")
		f.Close()
	}
}

// newTicketKey returns a fresh TLS session ticket key.
func newTicketKey() ([32]byte, error) {
	var k [32]byte
	_, err := rand.Read(k[:])
	return k, err
}
