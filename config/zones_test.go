package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestZoneTransferKeys checks zone.secondaries and zone.tsig: the values
// decoded from a valid configuration, and each problem reported at its
// file:line with its key; and wildcard CNAMEs that would summon.
func TestZoneTransferKeys(t *testing.T) {
	write := tempWriter(t)
	const secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg=="
	good := write("good.key", secret+"\n")
	knotFile := write("knot.key", "key:\n  - id: xfr\n    algorithm: hmac-sha256\n    secret: "+secret+"\n")
	notB64 := write("bad.key", "not base64 at all!\n")
	short := write("short.key", "c2hvcnQ=\n")
	empty := write("empty.key", "\n")
	unreadable := filepath.Join(filepath.Dir(good), "missing.key")

	cfg, err := Parse("test.toml", []byte(base+`secondaries = ["192.0.2.53", "[2001:db8::53]:5353", "2001:db8::54"]
tsig = { name = "XFR.example.test", algorithm = "hmac-sha512", secret_file = "`+knotFile+`" }
`))
	if err != nil {
		t.Fatal(err)
	}
	z := cfg.Zones[0]
	wantSec := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.53:53"), netip.MustParseAddrPort("[2001:db8::53]:5353"), netip.MustParseAddrPort("[2001:db8::54]:53"),
	}
	if len(z.Secondaries) != len(wantSec) {
		t.Fatalf("secondaries %v, want %v", z.Secondaries, wantSec)
	}
	for i := range wantSec {
		if z.Secondaries[i] != wantSec[i] {
			t.Errorf("secondary %d: %v, want %v", i, z.Secondaries[i], wantSec[i])
		}
	}
	if z.TSIG == nil || z.TSIG.Name != "xfr.example.test." || z.TSIG.Algorithm != dns.HmacSHA512 || z.TSIG.Secret != secret || z.TSIG.SecretFile != knotFile {
		t.Errorf("tsig %+v", z.TSIG)
	}
	cfg, err = Parse("test.toml", []byte(base+"tsig = { name = \"k\", secret_file = \""+good+"\" }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k := cfg.Zones[0].TSIG; k == nil || k.Algorithm != dns.HmacSHA256 || k.Name != "k.example.test." && k.Name != "k." {
		t.Errorf("default algorithm: tsig %+v", k)
	}

	type errCase struct {
		name string
		text string // appended to base; a "records" line replaces base's
		want []wantErr
	}
	tests := []errCase{
		{"secondary not an address", `secondaries = ["ns2.example.org"] # E1`,
			[]wantErr{{"# E1", "zone[0].secondaries[0]", "want an IP address"}}},
		{"secondary port 0", `secondaries = ["192.0.2.1:0"] # E1`,
			[]wantErr{{"# E1", "zone[0].secondaries[0]", "port 0"}}},
		{"secondary twice", `secondaries = ["192.0.2.1", "192.0.2.1:5300"] # E1`,
			[]wantErr{{"# E1", "zone[0].secondaries[1]", "listed twice"}}},
		{"secondaries not a list", `secondaries = "192.0.2.1" # E1`,
			[]wantErr{{"# E1", "zone[0].secondaries", "want array of strings"}}},
		{"tsig secret file missing", `tsig = { name = "k", secret_file = "` + unreadable + `" } # E1`,
			[]wantErr{{"# E1", "zone[0].tsig.secret_file", "no such file"}}},
		{"tsig secret not base64", `tsig = { name = "k", secret_file = "` + notB64 + `" } # E1`,
			[]wantErr{{"# E1", "zone[0].tsig.secret_file", "not base64"}}},
		{"tsig secret too short", `tsig = { name = "k", secret_file = "` + short + `" } # E1`,
			[]wantErr{{"# E1", "zone[0].tsig.secret_file", "only 5 bytes"}}},
		{"tsig secret empty", `tsig = { name = "k", secret_file = "` + empty + `" } # E1`,
			[]wantErr{{"# E1", "zone[0].tsig.secret_file", "is empty"}}},
		{"tsig secret relative", `tsig = { name = "k", secret_file = "k.key" } # E1`,
			[]wantErr{{"# E1", "zone[0].tsig.secret_file", "not an absolute path"}}},
		{"tsig bad algorithm", `tsig = { name = "k", algorithm = "hmac-md4", secret_file = "` + good + `" } # E1`,
			[]wantErr{{"# E1", "zone[0].tsig.algorithm", `unknown TSIG algorithm "hmac-md4"`}}},
		{"tsig no name", `tsig = { secret_file = "` + good + `" } # E1`,
			[]wantErr{{"# E1", "zone[0].tsig.name", "missing"}}},
		{"tsig bad name", `tsig = { name = "a..b", secret_file = "` + good + `" } # E1`,
			[]wantErr{{"# E1", "zone[0].tsig.name", "not a key name"}}},
		{"tsig no secret", `tsig = { name = "k" } # E1`,
			[]wantErr{{"# E1", "zone[0].tsig.secret_file", "missing"}}},
		{"tsig unknown key", `tsig = { name = "k", secret = "x", secret_file = "` + good + `" } # E1`,
			[]wantErr{{"# E1", "zone[0].tsig.secret", "unknown key"}}},
		{"tsig not a table", `tsig = "k" # E1`,
			[]wantErr{{"# E1", "zone[0].tsig", "want table"}}},
	}
	zone := strings.ReplaceAll(base, `records = ["ns1 A 127.0.0.1"]`, "")
	tests = append(tests,
		errCase{"wildcard CNAME to a unikernel", `records = ["ns1 A 127.0.0.1", "*.w CNAME a", "b CNAME www", "*.v CNAME b"] # E1` + "\n" + unikernel("www", "5"),
			[]wantErr{{"# E1", "zone[0].records[3]", `the wildcard *.v.example.test. leads to www.example.test., a name of unikernel "www"`}}},
		errCase{"wildcard CNAME to a unikernel, directly", `records = ["ns1 A 127.0.0.1", "*.w CNAME www"] # E1` + "\n" + unikernel("www", "5"),
			[]wantErr{{"# E1", "zone[0].records[1]", `leads to www.example.test., a name of unikernel "www"`}}},
	)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := base + tc.text + "\n"
			if strings.HasPrefix(tc.text, "records") {
				text = zone + tc.text + "\n"
			}
			_, err := Parse("test.toml", []byte(text))
			checkErrors(t, text, err, tc.want)
		})
	}
}

// tempWriter returns a function that writes content to a file called name
// in a fresh temporary directory (mode 0600) and returns its path.
func tempWriter(t *testing.T) func(name, content string) string {
	dir := t.TempDir()
	return func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}
