// Package testenv is the test-side face of internal/sandbox: the root-tier
// test environment (a private network namespace with a bridge, and a
// libvirtd running inside it under the machine-wide lock) started for a
// test and removed when it ends, and the helpers that skip a test when the
// machine lacks something (and fail it instead in CI, CI=true).
//
// Everything but the testing wrappers lives in internal/sandbox, which the
// benchmarks and the jitsu-sandbox command use too; the names below are
// that package's, kept here so that tests read testenv.X.
package testenv

import "github.com/jitsu-unikernel/jitsu/internal/sandbox"

// Fixed names and addresses of the environment (see internal/sandbox).
const (
	LockFile        = sandbox.LockFile
	URI             = sandbox.URI
	Bridge          = sandbox.Bridge
	BridgeMAC       = sandbox.BridgeMAC
	GatewayCIDR     = sandbox.GatewayCIDR
	ImageDir        = sandbox.ImageDir
	MultibootKernel = sandbox.MultibootKernel
	ClientCIDR      = sandbox.ClientCIDR
	ClientHostCIDR  = sandbox.ClientHostCIDR
)

// Gateway is the bridge's address without the prefix length.
var Gateway = sandbox.Gateway

type (
	// Options configure an environment (sandbox.Options).
	Options = sandbox.Options
	// Env is a running environment (sandbox.Env).
	Env = sandbox.Env
	// Image is the example unikernel as installed by `make image`.
	Image = sandbox.Image
	// JitsuConfig describes a jitsu config for the environment.
	JitsuConfig = sandbox.JitsuConfig
	// JitsuUnikernel is one [[unikernel]] of a JitsuConfig.
	JitsuUnikernel = sandbox.JitsuUnikernel
)

// Re-exported functions of internal/sandbox.
var (
	// StartLibvirt starts an environment (sandbox.StartLibvirt).
	StartLibvirt = sandbox.StartLibvirt
	// FindExampleImage finds the installed example image.
	FindExampleImage = sandbox.FindExampleImage
	// QEMUPid returns the pid of the QEMU process running a domain.
	QEMUPid = sandbox.QEMUPid
	// Prerequisites names what the environment needs but cannot find.
	Prerequisites = sandbox.Prerequisites
	// InNamespace runs a function inside a named network namespace.
	InNamespace = sandbox.InNamespace
)
