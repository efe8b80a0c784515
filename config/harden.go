package config

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"
)

// Defaults and bounds of the hardening keys: response-rate limiting and
// DNS cookies in [dns], authentication of [metrics].
const (
	// DefaultRRLRate is dns.rrl_rate: UDP answers per second per source
	// prefix (/24, /56), response class and name (Knot's default).
	DefaultRRLRate = 20
	// DefaultRRLSlip is dns.rrl_slip: every 2nd limited answer goes out
	// truncated (BIND's default), the others are dropped.
	DefaultRRLSlip = 2
	// DefaultRRLWindow is dns.rrl_window: a source that floods stays
	// limited until its rate over this window falls under the rate.
	DefaultRRLWindow = 5 * time.Second
	// DefaultCookies is dns.cookies: DNS cookies (RFC 7873/9018) on.
	DefaultCookies = true
	// MaxResponseDelay caps dns.response_delay: resolvers give up on a
	// query after a few seconds, and a longer delay only holds memory.
	MaxResponseDelay = 10 * time.Second
	maxRRLRate       = 1_000_000
	maxRRLSlip       = 100
	maxRRLWindow     = time.Minute
)

// dnsHardening decodes the RRL and cookie keys of [dns] and checks
// response_delay's bound.
func (d *decoder) dnsHardening(t *table, c *DNSConfig) {
	c.RRLRate, c.RRLSlip, c.RRLWindow, c.Cookies = DefaultRRLRate, DefaultRRLSlip, DefaultRRLWindow, DefaultCookies
	if v, ok := t.integer("rrl_rate", 0, maxRRLRate); ok {
		c.RRLRate = int(v)
	}
	if v, ok := t.integer("rrl_slip", 0, maxRRLSlip); ok {
		c.RRLSlip = int(v)
	}
	if v, ok := t.duration("rrl_window"); ok {
		switch {
		case v < time.Second || v > maxRRLWindow:
			t.errorf("rrl_window", "%v is out of range (1s to %v)", v, maxRRLWindow)
		case v%time.Second != 0:
			t.errorf("rrl_window", "%v is not a whole number of seconds", v)
		default:
			c.RRLWindow = v
		}
	}
	if v, ok := t.boolean("cookies"); ok {
		c.Cookies = v
	}
	if s, ok := t.str("cookie_secret_file"); ok && d.absPath(t, "cookie_secret_file", s) {
		secret, err := readCookieSecret(s)
		switch {
		case err != nil:
			t.errorf("cookie_secret_file", "%v", err)
		case !c.Cookies:
			t.errorf("cookie_secret_file", "set, but cookies = false")
		default:
			c.CookieSecret, c.CookieSecretFile = secret, s
		}
	}
	if c.ResponseDelay > MaxResponseDelay {
		t.errorf("response_delay", "%v is longer than the maximum %v (resolvers stop waiting long before)", c.ResponseDelay, MaxResponseDelay)
	}
}

// cookieSecretLen is the length of dns.cookie_secret_file's secret in
// bytes: 128 bits, the SipHash-2-4 key of RFC 9018 (as BIND's
// cookie-secret).
const cookieSecretLen = 16

// readCookieSecret reads a DNS cookie secret: one line of 32 hex digits;
// blank lines and lines starting with # are ignored.
func readCookieSecret(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cookie secret: %w", err)
	}
	var lines []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			lines = append(lines, line)
		}
	}
	const hint = "(make one with: head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n')"
	if len(lines) != 1 {
		return nil, fmt.Errorf("cookie secret file %s has %d secret lines, want one line of %d hex digits %s", path, len(lines), 2*cookieSecretLen, hint)
	}
	secret, err := hex.DecodeString(lines[0])
	if err != nil {
		return nil, fmt.Errorf("cookie secret in %s is not hex: %w", path, err)
	}
	if len(secret) != cookieSecretLen {
		return nil, fmt.Errorf("cookie secret in %s is %d bits, want %d (%d hex digits) %s", path, 8*len(secret), 8*cookieSecretLen, 2*cookieSecretLen, hint)
	}
	return secret, nil
}

// metricsAuth decodes the authentication keys of [metrics].
func (d *decoder) metricsAuth(t *table, c *MetricsConfig) {
	if s, ok := t.str("basic_auth_file"); ok && s != "" && d.absPath(t, "basic_auth_file", s) {
		c.BasicAuthFile = s
	}
	if s, ok := t.str("bearer_token_file"); ok && s != "" && d.absPath(t, "bearer_token_file", s) {
		c.BearerTokenFile = s
	}
	if c.BasicAuthFile != "" && c.BearerTokenFile != "" {
		t.errorf("bearer_token_file", "set basic_auth_file or bearer_token_file, not both")
	}
}
