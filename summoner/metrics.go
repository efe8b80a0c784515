package summoner

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the summoner's Prometheus collectors.
type metrics struct {
	state         *prometheus.GaugeVec
	boots         *prometheus.CounterVec
	bootDuration  *prometheus.HistogramVec
	stops         *prometheus.CounterVec
	failures      *prometheus.CounterVec
	refusals      *prometheus.CounterVec
	budgetRefused prometheus.Counter
	running       prometheus.Gauge
	booting       prometheus.Gauge
	memory        prometheus.Gauge

	summons         *prometheus.CounterVec
	gateErrors      *prometheus.CounterVec
	trafficErrors   prometheus.Counter
	reconcileErrors prometheus.Counter
	reconcileFixes  *prometheus.CounterVec
	admission       *prometheus.CounterVec
	drops           *prometheus.CounterVec
	warm            prometheus.Gauge
	warmMemory      prometheus.Gauge
	prepares        *prometheus.CounterVec
	snapshots       *prometheus.CounterVec
	guestTime       *prometheus.CounterVec
	startsInFlight  prometheus.Gauge
	startsQueued    prometheus.Gauge
	queueWait       prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jitsu_unikernel_state",
			Help: "1 for the unikernel's current summoner state, 0 for states it was in before.",
		}, []string{"unikernel", "state"}),
		boots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_unikernel_boots_total",
			Help: "Boots (including resumes and restores) started by the summoner.",
		}, []string{"unikernel"}),
		bootDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jitsu_unikernel_boot_duration_seconds",
			Help:    "Time from the hypervisor start call to the unikernel being ready.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 3, 5, 10, 30},
		}, []string{"unikernel"}),
		stops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_unikernel_stops_total",
			Help: "Unikernel stops by reason (idle, crash, budget, operator, reload, timeout, external).",
		}, []string{"unikernel", "reason"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_unikernel_failures_total",
			Help: "Failed boots (start error, probe error, boot timeout, crash while booting).",
		}, []string{"unikernel"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_unikernel_backoff_refusals_total",
			Help: "Summons refused because the unikernel failed recently and its backoff runs.",
		}, []string{"unikernel"}),
		budgetRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitsu_budget_refusals_total",
			Help: "Summons refused because the resource budget was full and nothing could be stopped.",
		}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitsu_budget_running",
			Help: "Unikernels counted as running (starting, ready) against max_running.",
		}),
		booting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitsu_budget_booting",
			Help: "Unikernels counted as booting against max_booting.",
		}),
		memory: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitsu_budget_memory_bytes",
			Help: "Guest memory counted against the memory budget (starting, ready and suspended unikernels).",
		}),
	}
	m.addSummonerMetrics()
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.state, m.boots, m.bootDuration, m.stops, m.failures,
		m.refusals, m.budgetRefused, m.running, m.booting, m.memory, m.summons, m.gateErrors, m.trafficErrors,
		m.reconcileErrors, m.reconcileFixes, m.admission, m.drops, m.warm, m.warmMemory, m.prepares,
		m.snapshots, m.guestTime, m.startsInFlight, m.startsQueued, m.queueWait} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register summoner metrics: %w", err)
		}
	}
	return m, nil
}

// addSummonerMetrics creates the collectors of triggers, faults and
// admission (newMetrics registers them).
func (m *metrics) addSummonerMetrics() {
	m.summons = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jitsu_unikernel_summons_total",
		Help: "Boots started by the summoner, by what triggered them (dns, tcp, udp, control, frontdoor, group).",
	}, []string{"unikernel", "trigger"})
	m.gateErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jitsu_summoner_gate_errors_total",
		Help: "Failed gate calls, by operation (hold, release, drop).",
	}, []string{"op"})
	m.trafficErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "jitsu_summoner_traffic_errors_total",
		Help: "Failed reads of the traffic counters used for idle-out.",
	})
	m.reconcileErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "jitsu_summoner_reconcile_errors_total",
		Help: "Reconciliations with the hypervisor that failed (retried with backoff).",
	})
	m.reconcileFixes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jitsu_summoner_reconcile_fixes_total",
		Help: "Times the reconciler found a unikernel's state different from its domain's and settled it.",
	}, []string{"unikernel"})
	m.admission = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jitsu_summoner_admission_refusals_total",
		Help: "Boots refused by admission control, by reason (boot_rate, source_prefix).",
	}, []string{"reason"})
	m.drops = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jitsu_summoner_rest_drops_total",
		Help: "Suspended or saved unikernels dropped (destroyed, save discarded), by reason (drop_after, memory).",
	}, []string{"reason"})
	m.warm = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "jitsu_budget_warm",
		Help: "Warm domains (created paused, in the warm pool) counted against warm_max.",
	})
	m.warmMemory = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "jitsu_budget_warm_memory_bytes",
		Help: "Guest memory of the warm domains, counted against warm_memory.",
	})
	m.prepares = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jitsu_unikernel_prepares_total",
		Help: "Warm domains prepared (created paused) for the warm pool, by result (ok, error).",
	}, []string{"unikernel", "result"})
	m.snapshots = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jitsu_unikernel_snapshot_ops_total",
		Help: "Snapshot saves and restores (start = snapshot), by op (save, restore, discard) and result (ok, error).",
	}, []string{"unikernel", "op", "result"})
	m.guestTime = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jitsu_unikernel_guest_time_failures_total",
		Help: "Restores after which setting the guest's clock through its agent failed.",
	}, []string{"unikernel"})
	m.startsInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "jitsu_starts_in_flight",
		Help: "Boots holding a start slot (hypervisor call to ready), bounded by max_starting.",
	})
	m.startsQueued = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "jitsu_starts_queued",
		Help: "Boots waiting in the start queue for a slot (max_starting).",
	})
	m.queueWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "jitsu_start_queue_wait_seconds",
		Help:    "Time boots waited in the start queue before their hypervisor call.",
		Buckets: []float64{0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60},
	})
}
