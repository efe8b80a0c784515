package knotconf

import (
	"strings"
	"testing"
)

func TestConf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		s       Secondary
		want    []string
		notWant []string
		wantErr bool
	}{
		{"plain", Secondary{Dir: "/d", IP: "10.0.0.2", Port: 53, Zone: "example.test.", Primary: "10.0.0.1:5353"},
			[]string{"listen: 10.0.0.2@53", "address: 10.0.0.1@5353", "    address: 10.0.0.1\n    action: notify",
				"domain: example.test.", `file: "/d/example.test.zone"`},
			[]string{"key", "via"}, false},
		{"tsig and via", Secondary{Dir: "/d", IP: "127.0.0.2", Port: 5300, Zone: "example.test.", Primary: "127.0.0.1:53",
			Via: "127.0.0.2", Key: "xfr.example.test.", Secret: "c2VjcmV0"},
			[]string{"key:\n  - id: xfr.example.test.\n    algorithm: hmac-sha256\n    secret: c2VjcmV0\nremote:",
				"address: 127.0.0.1@53\n    via: 127.0.0.2\n    key: xfr.example.test.\nacl:",
				"address: 127.0.0.1\n    key: xfr.example.test.\n    action: notify"},
			nil, false},
		{"bad primary", Secondary{Primary: "10.0.0.1"}, nil, nil, true},
	} {
		conf, err := tc.s.Conf()
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: error %v, want error %v", tc.name, err, tc.wantErr)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(conf, w) {
				t.Errorf("%s: no %q in\n%s", tc.name, w, conf)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(conf, w) {
				t.Errorf("%s: %q in\n%s", tc.name, w, conf)
			}
		}
	}
}
