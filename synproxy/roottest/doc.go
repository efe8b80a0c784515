// Package roottest holds the root-tier tests and benchmarks of synproxy:
// they build a client namespace routed through a host namespace that has
// the bridge, and a guest stand-in namespace on the bridge, and run the
// real proxy (nftables + NFQUEUE) in the host namespace. It has no
// non-test code; run it as root with `go test -p 1`.
package roottest
