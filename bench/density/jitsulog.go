package main

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"time"
)

// bootTimes reads jitsu's JSON log and returns, for the unikernels in
// names, the median of libvirt's create call ("domain started", took)
// and of the time from the start call to ready (the transition
// starting → ready, duration); 0 for none.
func bootTimes(logPath string, names map[string]bool) (create, ready time.Duration) {
	f, err := os.Open(logPath)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	var cs, rs []time.Duration
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct {
			Msg, Domain, Unikernel, From, To string
			Took, Duration                   float64
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		switch {
		case e.Msg == "domain started" && len(e.Domain) > len(domainPrefix) && names[e.Domain[len(domainPrefix):]]:
			cs = append(cs, seconds(e.Took))
		case e.Msg == "unikernel transition" && e.From == "starting" && e.To == "ready" && names[e.Unikernel]:
			rs = append(rs, seconds(e.Duration))
		}
	}
	return median(cs), median(rs)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}
