package dnsserver

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// metrics are the server's collectors. Hot paths hold pre-resolved children.
type metrics struct {
	queries      *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	summonErrors prometheus.Counter
	transfers    *prometheus.CounterVec // zone, type, result
	notify       *prometheus.CounterVec // zone, result
	serial       *prometheus.GaugeVec   // zone

	droppedShort, droppedResponse, droppedPack, droppedTCPLimit, droppedTooBig prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_dns_queries_total",
			Help: "DNS queries answered, by zone (empty if none), query type and response code.",
		}, []string{"zone", "qtype", "rcode"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_dns_dropped_total",
			Help: "DNS messages dropped without an answer, by reason.",
		}, []string{"reason"}),
		summonErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitsu_dns_summon_errors_total",
			Help: "Queries answered SERVFAIL because the summoner failed.",
		}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_dns_transfers_total",
			Help: "Zone transfers to secondaries over TCP, by zone, type (AXFR, IXFR) and result: full (the whole zone), incremental (journal differences), uptodate (the SOA alone), bad_tsig (refused). Transfers refused by address are NOTAUTH in jitsu_dns_queries_total.",
		}, []string{"zone", "type", "result"}),
		notify: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitsu_dns_notify_total",
			Help: "NOTIFY messages sent to secondaries, by zone and result: acknowledged, refused (answered with an error), unanswered, given_up (after the last try).",
		}, []string{"zone", "result"}),
		serial: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jitsu_dns_zone_serial",
			Help: "The SOA serial each zone is served with (bumped automatically when a reload changes the zone).",
		}, []string{"zone"}),
	}
	if reg != nil {
		var err error
		if m.queries, err = register(reg, m.queries); err != nil {
			return nil, err
		}
		if m.dropped, err = register(reg, m.dropped); err != nil {
			return nil, err
		}
		if m.summonErrors, err = register(reg, m.summonErrors); err != nil {
			return nil, err
		}
		if m.transfers, err = register(reg, m.transfers); err != nil {
			return nil, err
		}
		if m.notify, err = register(reg, m.notify); err != nil {
			return nil, err
		}
		if m.serial, err = register(reg, m.serial); err != nil {
			return nil, err
		}
	}
	m.droppedShort = m.dropped.WithLabelValues("short")
	m.droppedResponse = m.dropped.WithLabelValues("response")
	m.droppedPack = m.dropped.WithLabelValues("pack")
	m.droppedTCPLimit = m.dropped.WithLabelValues("tcp_limit")
	m.droppedTooBig = m.dropped.WithLabelValues("too_big")
	return m, nil
}

// register registers c, or returns the identical collector registered
// before (a second server on the same registry shares the counters).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old, nil
			}
		}
		return c, fmt.Errorf("register DNS metrics: %w", err)
	}
	return c, nil
}

// query returns the counter child for one (zone, qtype, rcode).
func (m *metrics) query(zone string, qtype uint16, rcode int) prometheus.Counter {
	qt, ok := dns.TypeToString[qtype]
	if !ok {
		qt = "other"
	}
	rc, ok := dns.RcodeToString[rcode]
	if !ok {
		rc = fmt.Sprint(rcode)
	}
	if zone == "" {
		zone = "none"
	}
	return m.queries.WithLabelValues(zone, qt, rc)
}

// rateLimit lets one event through per interval and counts the others.
type rateLimit struct {
	interval   time.Duration
	last       atomic.Int64
	suppressed atomic.Int64
}

// allow reports whether to log now, and how many were suppressed since.
func (r *rateLimit) allow() (bool, int64) {
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(r.interval) || !r.last.CompareAndSwap(last, now) {
		r.suppressed.Add(1)
		return false, 0
	}
	return true, r.suppressed.Swap(0)
}

func zapError(err error) zap.Field { return zap.Error(err) }
