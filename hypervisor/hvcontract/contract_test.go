package hvcontract_test

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/hypervisor/hvcontract"
	"github.com/jitsu-unikernel/jitsu/hypervisor/hvtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestContractFake runs the contract against the hvtest fake.
func TestContractFake(t *testing.T) {
	hvcontract.Run(t, hvcontract.Harness{
		New: func(t *testing.T) hypervisor.Hypervisor { return hvtest.New() },
		Spec: func(t *testing.T, name string) hypervisor.Spec {
			return hypervisor.Spec{Name: name, Kernel: "/nonexistent/bzImage", MemoryBytes: 64 << 20, DomainType: "qemu"}
		},
		Crash: func(t *testing.T, hv hypervisor.Hypervisor, name string) {
			t.Helper()
			if !hv.(*hvtest.Fake).Crash(name) {
				t.Fatalf("fake Crash(%q): domain not running", name)
			}
		},
		Foreign: func(t *testing.T, hv hypervisor.Hypervisor) string {
			hv.(*hvtest.Fake).AddForeign("foreign")
			return "foreign"
		},
		GuestClock: func(t *testing.T, hv hypervisor.Hypervisor, spec hypervisor.Spec) (time.Time, error) {
			c, ok := hv.(*hvtest.Fake).GuestClock(spec.Name)
			if !ok {
				return time.Time{}, errors.New("no such domain")
			}
			return c, nil
		},
	})
}
