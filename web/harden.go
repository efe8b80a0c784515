package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Limits of the HTTP server. WriteTimeout leaves room for the longest CPU
// profile or trace.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = maxProfileSeconds*time.Second + 30*time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// maxProfileSeconds bounds /debug/pprof/profile and trace ?seconds=.
	maxProfileSeconds = 30
)

// newHTTPServer returns an http.Server for h with every timeout set.
func newHTTPServer(h http.Handler, log *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          zap.NewStdLog(log),
	}
}

// boundedSeconds refuses a ?seconds= outside 1..maxProfileSeconds (the
// default, 30 s for a profile and 1 s for a trace, is kept when absent).
func boundedSeconds(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if v := r.FormValue("seconds"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxProfileSeconds {
				http.Error(w, fmt.Sprintf("seconds must be an integer from 1 to %d", maxProfileSeconds), http.StatusBadRequest)
				return
			}
		}
		h(w, r)
	}
}

// warnPublic logs a warning when addr is not a loopback address: metrics,
// pprof and the status page then face whoever can reach it.
func warnPublic(log *zap.Logger, addr net.Addr, auth *Auth) {
	ta, ok := addr.(*net.TCPAddr)
	if !ok || ta.IP.IsLoopback() {
		return
	}
	if auth == nil {
		log.Warn("metrics and status page listen on a non-loopback address without authentication: anyone who can reach it sees them (set metrics.basic_auth_file or metrics.bearer_token_file, or listen on 127.0.0.1)",
			zap.Stringer("addr", addr))
		return
	}
	log.Warn("metrics and status page listen on a non-loopback address (authentication on, but plain HTTP)", zap.Stringer("addr", addr))
}

// Auth is HTTP authentication of every endpoint: basic (user and password)
// or a bearer token. Secrets are kept as SHA-256 digests and compared in
// constant time.
type Auth struct {
	basic bool
	user  [32]byte
	pass  [32]byte
	token [32]byte
}

// LoadAuth reads the basic authentication file ("user:password") or the
// bearer token file; both empty returns nil (no authentication).
func LoadAuth(basicFile, tokenFile string) (*Auth, error) {
	switch {
	case basicFile != "" && tokenFile != "":
		return nil, errors.New("load HTTP authentication: both a basic auth file and a bearer token file given")
	case basicFile != "":
		s, err := readSecret(basicFile)
		if err != nil {
			return nil, err
		}
		user, pass, ok := strings.Cut(s, ":")
		if !ok || user == "" || pass == "" {
			return nil, fmt.Errorf("load HTTP basic authentication from %s: want one line \"user:password\"", basicFile)
		}
		return &Auth{basic: true, user: sha256.Sum256([]byte(user)), pass: sha256.Sum256([]byte(pass))}, nil
	case tokenFile != "":
		s, err := readSecret(tokenFile)
		if err != nil {
			return nil, err
		}
		if s == "" || strings.ContainsAny(s, " \t\n") {
			return nil, fmt.Errorf("load HTTP bearer token from %s: want one token on one line", tokenFile)
		}
		return &Auth{token: sha256.Sum256([]byte(s))}, nil
	}
	return nil, nil
}

// readSecret reads a small secret file, warning-free trimmed of its final
// newline; group- or world-readable files are refused.
func readSecret(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("load HTTP authentication: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("load HTTP authentication: %s is readable by others (mode %#o): chmod 600 it", path, fi.Mode().Perm())
	}
	if fi.Size() > 4096 {
		return "", fmt.Errorf("load HTTP authentication: %s is larger than 4 KiB", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("load HTTP authentication: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// allowed reports whether r carries the credentials.
func (a *Auth) allowed(r *http.Request) bool {
	if a.basic {
		u, p, ok := r.BasicAuth()
		uh, ph := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		return ok && subtle.ConstantTimeCompare(uh[:], a.user[:])&subtle.ConstantTimeCompare(ph[:], a.pass[:]) == 1
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	th := sha256.Sum256([]byte(tok))
	return ok && subtle.ConstantTimeCompare(th[:], a.token[:]) == 1
}

// challenge answers 401 with the scheme expected.
func (a *Auth) challenge(w http.ResponseWriter) {
	if a.basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="jitsu", charset="UTF-8"`)
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="jitsu"`)
	}
	http.Error(w, "unauthorized", http.StatusUnauthorized)
}
