package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"
)

// nowPath reports the guest's clock and fresh random bytes, for tests of
// restored and resumed guests (docs/boot.md): after SetGuestTime the clock
// is the host's, and two restores of one snapshot give different random
// bytes. The reply is one JSON object:
//
//	{"unix_nano": 1764567890123456789, "random": "<32 hex digits>", "clock_sets": 1}
//
// unix_nano is time.Now().UnixNano() when the request is handled, random
// is 16 bytes from crypto/rand (the kernel's getrandom), clock_sets is how
// many guest-set-time commands the agent has applied since boot.
const nowPath = "/.jitsu/now"

// nowReply is the body of nowPath.
type nowReply struct {
	UnixNano  int64  `json:"unix_nano"`
	Random    string `json:"random"`
	ClockSets int64  `json:"clock_sets"`
}

func serveNow(w http.ResponseWriter, r *http.Request) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		http.Error(w, "crypto/rand: "+err.Error(), http.StatusInternalServerError)
		return
	}
	rep := nowReply{UnixNano: time.Now().UnixNano(), Random: hex.EncodeToString(b[:])}
	if a := agentCounters.Load(); a != nil {
		rep.ClockSets = a.clockSets.Load()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(rep)
}
