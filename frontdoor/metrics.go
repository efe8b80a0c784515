package frontdoor

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the front door's Prometheus collectors. The unikernel label
// is empty for connections refused before their unikernel was known.
type metrics struct {
	conns    *prometheus.CounterVec
	bytesIn  *prometheus.CounterVec
	bytesOut *prometheus.CounterVec
	bootWait *prometheus.HistogramVec
	refusals *prometheus.CounterVec
	open     prometheus.Gauge

	// per caches each unikernel's counters (name → *unikernelMetrics): a
	// connection does not hash label values.
	per sync.Map
}

// unikernelMetrics are one unikernel's series.
type unikernelMetrics struct {
	conns, bytesIn, bytesOut prometheus.Counter
	bootWait                 prometheus.Observer
}

// of returns the series of unikernel, made on first use.
func (m *metrics) of(unikernel string) *unikernelMetrics {
	if um, ok := m.per.Load(unikernel); ok {
		return um.(*unikernelMetrics)
	}
	um, _ := m.per.LoadOrStore(unikernel, &unikernelMetrics{
		conns:    m.conns.WithLabelValues(unikernel),
		bytesIn:  m.bytesIn.WithLabelValues(unikernel),
		bytesOut: m.bytesOut.WithLabelValues(unikernel),
		bootWait: m.bootWait.WithLabelValues(unikernel),
	})
	return um.(*unikernelMetrics)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_frontdoor_connections_total",
			Help: "Connections the front door routed to a unikernel (by name), spliced or refused later.",
		}, []string{"unikernel"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_frontdoor_received_bytes_total",
			Help: "Bytes from clients to the unikernel through the front door.",
		}, []string{"unikernel"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_frontdoor_sent_bytes_total",
			Help: "Bytes from the unikernel to its clients through the front door.",
		}, []string{"unikernel"}),
		bootWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jitsu_frontdoor_boot_wait_seconds",
			Help:    "Time a routed connection waited for its unikernel to be ready (about 0 when it ran).",
			Buckets: []float64{.001, .005, .025, .1, .25, .5, 1, 2, 3, 5, 10, 30},
		}, []string{"unikernel"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_frontdoor_refusals_total",
			Help: "Connections the front door refused, by reason (overload, timeout, closed, malformed, too_large, no_name, unknown_name, boot_queue_full, summon_failed, dial_failed).",
		}, []string{"unikernel", "reason"}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitsu_frontdoor_open_connections",
			Help: "Client connections open through the front door (being read, waiting for a boot or spliced).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.conns, m.bytesIn, m.bytesOut, m.bootWait, m.refusals, m.open} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register front door metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) refuse(unikernel, reason string) {
	m.refusals.WithLabelValues(unikernel, reason).Inc()
}
