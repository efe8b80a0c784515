package synproxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a held or intercepted SYN is dropped, the values of the reason
// label of jitsu_synproxy_syns_dropped_total.
const (
	ReasonDuplicate = "duplicate" // a newer SYN of the same 4-tuple replaced it
	ReasonOverflow  = "overflow"  // a per-address, total or byte bound was full
	ReasonAge       = "age"       // held longer than Limits.MaxAge
	ReasonMalformed = "malformed" // not a well-formed client SYN
	ReasonFailed    = "failed"    // Drop: the boot failed, the client got a RST
	ReasonShutdown  = "shutdown"  // Run returned while it was held
)

type metrics struct {
	held      prometheus.Counter
	replayed  prometheus.Counter
	dropped   *prometheus.CounterVec
	resets    prometheus.Counter
	heldNow   prometheus.Gauge
	heldBytes prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		held: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitsu_synproxy_syns_held_total",
			Help: "TCP SYNs to a held address taken into the hold.",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitsu_synproxy_syns_replayed_total",
			Help: "Held TCP SYNs delivered to the guest on release.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_synproxy_syns_dropped_total",
			Help: "Intercepted TCP SYNs dropped, by reason.",
		}, []string{"reason"}),
		resets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitsu_synproxy_resets_total",
			Help: "TCP RSTs sent to held clients because their unikernel failed to boot.",
		}),
		heldNow: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitsu_synproxy_held",
			Help: "TCP SYNs held now.",
		}),
		heldBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitsu_synproxy_held_bytes",
			Help: "Bytes of IP packets held now.",
		}),
	}
	for _, r := range []string{ReasonDuplicate, ReasonOverflow, ReasonAge, ReasonMalformed, ReasonFailed, ReasonShutdown} {
		m.dropped.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.held, m.replayed, m.dropped, m.resets, m.heldNow, m.heldBytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register synproxy metrics: %w", err)
		}
	}
	return m, nil
}
