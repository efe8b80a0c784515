package frontdoor

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrNoHost means a complete HTTP/1.x request head has no Host.
var ErrNoHost = errors.New("HTTP request without a Host header")

// hostParser finds the end of the head of the first HTTP/1.x request in
// a growing buffer and then takes its host name: from an absolute-form
// request target, else from the Host header (RFC 9112 section 3.2). Work
// is linear in the bytes fed: the search for the blank line resumes where
// it stopped.
type hostParser struct {
	max  int // cap on the request head
	scan int // bytes already searched for the end of the head
}

// feed looks at raw, all the bytes read so far, and returns the host name
// (lower-case, without port and final dot), errNeedMore or an error.
func (p *hostParser) feed(raw []byte) (string, error) {
	if len(raw) > p.max {
		raw = raw[:p.max]
	}
	start := max(p.scan-3, 0)
	end := -1
	if i := bytes.Index(raw[start:], []byte("\n\r\n")); i >= 0 {
		end = start + i + 3
	}
	if j := bytes.Index(raw[start:], []byte("\n\n")); j >= 0 && (end < 0 || start+j+2 < end) {
		end = start + j + 2
	}
	if end < 0 {
		p.scan = len(raw)
		// Fail early (a TLS ClientHello on an HTTP port) when the request
		// line cannot be HTTP.
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line = raw[:i+1]
		}
		if err := checkMethodPrefix(line); err != nil {
			return "", err
		}
		if len(raw) >= p.max {
			return "", ErrTooLarge
		}
		return "", errNeedMore
	}
	return parseHead(raw[:end])
}

// ParseHost returns the host name of the HTTP/1.x request head at the
// start of data (at most max bytes are looked at). The error is
// ErrNoHost, ErrTooLarge or wraps ErrMalformed; an incomplete head is
// ErrMalformed too.
func ParseHost(data []byte, max int) (string, error) {
	p := hostParser{max: max}
	name, err := p.feed(data)
	if errors.Is(err, errNeedMore) {
		return "", fmt.Errorf("truncated request head: %w", ErrMalformed)
	}
	return name, err
}

// checkMethodPrefix reports a request line that does not start with a
// token followed by a space.
func checkMethodPrefix(b []byte) error {
	for i, c := range b {
		if c == ' ' && i > 0 {
			return nil
		}
		if !isTokenChar(c) || i >= 32 {
			return fmt.Errorf("request line does not start with a method: %w", ErrMalformed)
		}
	}
	return nil
}

func isTokenChar(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune("\"(),/:;<=>?@[\\]{}", rune(c))
}

// parseHead parses a complete request head (ending with its blank line).
func parseHead(head []byte) (string, error) {
	lines := strings.Split(strings.TrimRight(string(head), "\r\n"), "\n")
	for i := range lines {
		lines[i] = strings.TrimSuffix(lines[i], "\r")
	}
	method, rest, ok1 := strings.Cut(lines[0], " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" || checkMethodPrefix([]byte(method+" ")) != nil {
		return "", fmt.Errorf("request line %.80q: %w", lines[0], ErrMalformed)
	}
	if proto != "HTTP/1.1" && proto != "HTTP/1.0" {
		return "", fmt.Errorf("protocol %.20q (want HTTP/1.0 or HTTP/1.1): %w", proto, ErrMalformed)
	}
	var host string
	seen := false
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return "", fmt.Errorf("header line %.80q: %w", l, ErrMalformed)
		}
		if strings.EqualFold(name, "host") {
			if seen {
				return "", fmt.Errorf("two Host headers: %w", ErrMalformed)
			}
			seen = true
			host = strings.Trim(value, " \t")
		}
	}
	if lt := strings.ToLower(target); strings.HasPrefix(lt, "http://") || strings.HasPrefix(lt, "https://") {
		// Absolute form: its authority wins over Host.
		auth := target[strings.Index(target, "//")+2:]
		if i := strings.IndexAny(auth, "/?#"); i >= 0 {
			auth = auth[:i]
		}
		host, seen = auth, true
	}
	if !seen || host == "" {
		return "", ErrNoHost
	}
	return hostName(host)
}

// hostName strips the port from a Host value and validates the name.
// IP literals are not names of unikernels: ErrNoHost.
func hostName(h string) (string, error) {
	if strings.ContainsRune(h, '@') {
		return "", fmt.Errorf("userinfo in host %.80q: %w", h, ErrMalformed)
	}
	if strings.HasPrefix(h, "[") {
		return "", fmt.Errorf("IP literal %.80q: %w", h, ErrNoHost)
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		port := h[i+1:]
		for _, c := range port {
			if c < '0' || c > '9' {
				return "", fmt.Errorf("port in host %.80q: %w", h, ErrMalformed)
			}
		}
		h = h[:i]
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return "", fmt.Errorf("IP literal %.80q: %w", h, ErrNoHost)
	}
	return checkName(h)
}
