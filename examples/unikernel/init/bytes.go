package main

import (
	"net/http"
	"strconv"
)

// bytesPath serves N zero bytes (?n=N, at most maxBytes) generated on the
// fly: the front-door benchmark's large download, without a large file
// in the initramfs (that is, in guest memory).
const (
	bytesPath = "/.jitsu/bytes"
	maxBytes  = 1 << 30
)

var zeros = make([]byte, 64<<10)

func serveBytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil || n < 0 || n > maxBytes {
		http.Error(w, "want ?n=0.."+strconv.Itoa(maxBytes), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return
		}
		n -= k
	}
}
