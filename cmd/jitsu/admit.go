package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/jitsu-unikernel/jitsu/admission"
	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/dnsserver"
	"github.com/jitsu-unikernel/jitsu/summoner"
)

// newAdmission builds the admission controller of [admission]: the rates
// from the config, the rest (prefix lengths, table size) the package's.
func newAdmission(cfg *config.Config) (*admission.Controller, error) {
	a := cfg.Admission
	c, err := admission.New(admission.NewConfig(a.BootRate, a.BootBurst, a.PrefixRate, a.PrefixBurst))
	if err != nil {
		return nil, fmt.Errorf("admission control: %w", err)
	}
	return c, nil
}

// sourceSummoner is what admissionDNS wraps: the summoner's DNS side, with
// every optional interface the DNS server asserts on its Summoner
// (TestDNSWrappersForward checks that admissionDNS forwards them all).
type sourceSummoner interface {
	dnsserver.Summoner
	dnsserver.SourceSummoner
	dnsserver.Waiter
}

var (
	_ dnsserver.SourceSummoner = admissionDNS{}
	_ dnsserver.Waiter         = admissionDNS{}
)

// admissionDNS is the DNS server's Summoner: it passes the query's source
// on (SummonFrom), and with admission.on_refuse = "answer" answers the
// addresses of a unikernel whose boot admission control refused.
type admissionDNS struct {
	inner  sourceSummoner
	answer bool
}

// newAdmissionDNS wraps s per cfg's admission.on_refuse.
func newAdmissionDNS(s sourceSummoner, cfg *config.Config) admissionDNS {
	return admissionDNS{inner: s, answer: cfg.Admission.OnRefuse == config.OnRefuseAnswer}
}

func (a admissionDNS) refused(addrs []netip.Addr, err error) ([]netip.Addr, error) {
	if a.answer && errors.Is(err, summoner.ErrAdmission) && len(addrs) > 0 {
		return addrs, nil
	}
	return addrs, err
}

// Summon implements dnsserver.Summoner.
func (a admissionDNS) Summon(ctx context.Context, name string) ([]netip.Addr, error) {
	return a.refused(a.inner.Summon(ctx, name))
}

// SummonFrom implements dnsserver.SourceSummoner.
func (a admissionDNS) SummonFrom(ctx context.Context, src netip.Addr, name string) ([]netip.Addr, error) {
	return a.refused(a.inner.SummonFrom(ctx, src, name))
}

// WaitReady implements dnsserver.Waiter.
func (a admissionDNS) WaitReady(name string) <-chan struct{} { return a.inner.WaitReady(name) }

// lowMemory reports whether the host is short of memory: MemAvailable
// under a tenth of MemTotal (the summoner then drops suspended guests).
func lowMemory() bool {
	total, avail := meminfo("/proc/meminfo")
	return total > 0 && avail < total/10
}

// meminfo reads MemTotal and MemAvailable (bytes) from a meminfo file; 0s
// when it cannot.
func meminfo(path string) (total, avail uint64) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		kb, err := strconv.ParseUint(fs[1], 10, 64)
		if err != nil {
			continue
		}
		switch fs[0] {
		case "MemTotal:":
			total = kb << 10
		case "MemAvailable:":
			avail = kb << 10
		}
	}
	return total, avail
}
