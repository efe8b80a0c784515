package roottest

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpOnly is what the summoner asks a hold for without a udp trigger.
var tcpOnly = []uint8{6}
