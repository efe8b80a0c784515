package sandbox

import "runtime"

// The main goroutine keeps the main OS thread for itself: InNamespace
// leaves the thread it switched locked until its goroutine exits, and a
// locked goroutine that exits on the main thread does not end it (Go
// cannot end the main thread) but leaves it, switched, to the scheduler.
// The process would then appear in the namespace (`ip netns pids`), and
// the clean-up that kills what is left there would kill it.
func init() { runtime.LockOSThread() }
