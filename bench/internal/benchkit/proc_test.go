package benchkit

import "testing"

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		name, status string
		want         int
		wantErr      bool
	}{
		{"status", "Name:\tqemu-system-x86\nVmPeak:\t  900000 kB\nVmRSS:\t   62340 kB\nRssAnon:\t 1 kB\n", 62340, false},
		{"zombie", "Name:\tqemu\nState:\tZ (zombie)\n", 0, true},
		{"bad unit", "VmRSS:\t 12 MB\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVmRSS(tt.status)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseVmRSS = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseStatTicks(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		// A command with spaces and a parenthesis: utime 7, stime 5.
		{"42 (qemu sys) x) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 100 1000 50", 12, false},
		{"42 (short) S 1 2", 0, true},
		{"no command", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseStatTicks(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseStatTicks(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
