package libvirt

import (
	"testing"
	"time"
)

// TestKeepAliveOffByDefault: client keepalives stay off unless asked for
// (a keepalive timeout with several calls waiting crashes libvirt's
// client, see Options.KeepAliveInterval); asked for without a count, the
// count is 3.
func TestKeepAliveOffByDefault(t *testing.T) {
	for _, tt := range []struct {
		name         string
		interval     time.Duration
		count        uint
		wantInterval time.Duration
		wantCount    uint
	}{
		{"default: off", 0, 0, 0, 0},
		{"interval only", 5 * time.Second, 0, 5 * time.Second, 3},
		{"both", 2 * time.Second, 4, 2 * time.Second, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{URI: "test:///default", ShutdownTimeout: time.Second, KeepAliveInterval: tt.interval, KeepAliveCount: tt.count}
			if err := o.check(); err != nil {
				t.Fatal(err)
			}
			if o.KeepAliveInterval != tt.wantInterval || o.KeepAliveCount != tt.wantCount {
				t.Errorf("keepalive %v × %d, want %v × %d", o.KeepAliveInterval, o.KeepAliveCount, tt.wantInterval, tt.wantCount)
			}
		})
	}
}
