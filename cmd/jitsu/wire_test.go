package main

import (
	"testing"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// TestDerivedMACsAgree: a spec without a MAC gets, from every backend, the
// MAC config derives (jitsu always sets it; the two must not drift).
func TestDerivedMACsAgree(t *testing.T) {
	for _, name := range []string{"www", "u34929", "a.b-c_d"} {
		dom := config.DomainPrefix + name
		if got, want := (hypervisor.Spec{Name: dom}).NIC(), config.DeriveMAC(dom); got.String() != want.String() {
			t.Errorf("%s: hypervisor derives %v, config %v", dom, got, want)
		}
	}
}
