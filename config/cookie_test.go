package config

import (
	"bytes"
	"encoding/hex"
	"path/filepath"
	"testing"
)

// TestCookieSecretFile: dns.cookie_secret_file is read when the config is
// parsed; a missing, malformed or short secret is a clear error at the
// key's line.
func TestCookieSecretFile(t *testing.T) {
	write := tempWriter(t)
	const hexSecret = "e5e973e5a6b2a43f48e7dc849e37bfcf"
	good := write("good", "# shared by ns1 and ns2\n"+hexSecret+"\n")
	cfg, err := Parse("test.toml", []byte(base+"[dns]\ncookie_secret_file = \""+good+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString(hexSecret)
	if !bytes.Equal(cfg.DNS.CookieSecret, want) || cfg.DNS.CookieSecretFile != good {
		t.Errorf("cookie secret %x from %q, want %x from %q", cfg.DNS.CookieSecret, cfg.DNS.CookieSecretFile, want, good)
	}
	cfg, err = Parse("test.toml", []byte(base))
	if err != nil || cfg.DNS.CookieSecret != nil {
		t.Errorf("without the key: secret %x, %v; want none (a random secret per process)", cfg.DNS.CookieSecret, err)
	}
	for _, tc := range []struct {
		name, text string
		want       []wantErr
	}{
		{"missing file", "cookie_secret_file = \"" + filepath.Join(filepath.Dir(good), "nope") + "\" # E1",
			[]wantErr{{"# E1", "dns.cookie_secret_file", "no such file"}}},
		{"relative path", "cookie_secret_file = \"cookie.secret\" # E1",
			[]wantErr{{"# E1", "dns.cookie_secret_file", "not an absolute path"}}},
		{"not hex", "cookie_secret_file = \"" + write("nothex", "not a hex secret at all!!!!!!!!!\n") + "\" # E1",
			[]wantErr{{"# E1", "dns.cookie_secret_file", "not hex"}}},
		{"64 bits", "cookie_secret_file = \"" + write("short", "e5e973e5a6b2a43f\n") + "\" # E1",
			[]wantErr{{"# E1", "dns.cookie_secret_file", "is 64 bits, want 128"}}},
		{"256 bits", "cookie_secret_file = \"" + write("long", hexSecret+hexSecret+"\n") + "\" # E1",
			[]wantErr{{"# E1", "dns.cookie_secret_file", "is 256 bits, want 128"}}},
		{"empty", "cookie_secret_file = \"" + write("empty", "# nothing\n\n") + "\" # E1",
			[]wantErr{{"# E1", "dns.cookie_secret_file", "has 0 secret lines"}}},
		{"two secrets", "cookie_secret_file = \"" + write("two", hexSecret+"\n"+hexSecret+"\n") + "\" # E1",
			[]wantErr{{"# E1", "dns.cookie_secret_file", "has 2 secret lines"}}},
		{"cookies off", "cookies = false\ncookie_secret_file = \"" + good + "\" # E1",
			[]wantErr{{"# E1", "dns.cookie_secret_file", "cookies = false"}}},
		{"not a string", "cookie_secret_file = 16 # E1",
			[]wantErr{{"# E1", "dns.cookie_secret_file", "want string"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := base + "[dns]\n" + tc.text + "\n"
			_, err := Parse("test.toml", []byte(text))
			checkErrors(t, text, err, tc.want)
		})
	}
}
