package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// msf formats d in milliseconds with two decimals.
func msf(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// logLine is the step's one-line progress report.
func (r row) logLine() string {
	if !r.measured() {
		return fmt.Sprintf("up %.1f s; STOP: %s", r.step.Seconds(), r.fail)
	}
	s := fmt.Sprintf("up %.1f s; CPU/guest host %.2f %%, QEMU %.2f %%; RSS/guest %.1f MiB; DNS p99 static %s ms, unikernel %s ms; HTTP %d/%d",
		r.step.Seconds(), r.hostPerGuest(), r.cpu.qemu/float64(r.n), r.rssPerGuest(), msf(r.static.pct(99)), msf(r.uk.pct(99)), r.httpOK, r.n)
	if r.fail != "" {
		s += "; STOP: " + r.fail
	}
	return s
}

// hostPerGuest is the host's busy time over the quiet window minus
// jitsu's own, per guest, in percent of a core.
func (r row) hostPerGuest() float64 { return (r.cpu.host - r.cpu.jitsu) / float64(r.n) }

func (r row) rssPerGuest() float64 { return float64(r.qemuRSSKiB) / 1024 / float64(r.n) }

// measured reports whether the step got as far as its measurements.
func (r row) measured() bool { return r.static.d != nil }

// report prints the table (Markdown, for docs/benchmarks.md) and the
// summary to stdout.
func (b *bench) report(rows []row) {
	if len(rows) == 0 {
		return
	}
	w := io.Writer(os.Stdout)
	proxy := "on"
	if !b.o.synproxy {
		proxy = "off"
	}
	fmt.Fprintf(w, "\nDensity: %d unikernels configured (%s image, %s, 64 MiB, SYN proxy %s), brought up %d at a time; quiet window %v; DNS %d queries per name at %.0f/s\n\n",
		b.o.m, b.o.image, b.o.domainType, proxy, b.o.parallel, b.o.quiet, b.o.dnsQueries, b.o.dnsRate)
	head := []string{"running", "step up (s)", "total up (s)", "slowest guest (s)", "create call / start→ready, median (s)", "host CPU/guest (% core)", "QEMU CPU/guest (% core)",
		"libvirtd CPU (% core)", "jitsu CPU (% core)", "QEMU RSS/guest (MiB)", "jitsu RSS (MiB)", "jitsu fds", "libvirtd fds",
		"DNS static p50/p99 (ms)", "DNS unikernel p50/p99 (ms)", "HTTP answered", "held"}
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
	held := 0
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r.cells(), " | "))
		if r.fail == "" {
			held = r.n
		}
	}
	last := rows[len(rows)-1]
	fmt.Fprintf(w, "\nlargest number running that held (DNS p99 < %s ms, every guest answering HTTP): %d\n", msf(b.o.p99Limit), held)
	if last.fail != "" {
		fmt.Fprintf(w, "growth stopped at %d: %s\n", last.n, last.fail)
	}
	fmt.Fprintf(w, "time to bring %d up: %.1f s\n", b.up, b.total.Seconds())
	fmt.Fprintf(w, "host CPU/guest counts every process of the machine (other load included); QEMU CPU/guest is the QEMU processes' utime+stime only. Wall-clock times depend on the machine's other load.\n")
}

// cells is r as table cells.
func (r row) cells() []string {
	out := []string{fmt.Sprint(r.n), fmt.Sprintf("%.1f", r.step.Seconds()), fmt.Sprintf("%.1f", r.total.Seconds()), fmt.Sprintf("%.1f", r.slowest.Seconds()),
		fmt.Sprintf("%.2f / %.2f", r.create.Seconds(), r.boot.Seconds())}
	if !r.measured() {
		out = append(out, "–", "–", "–", "–", "–", "–", "–", "–", "–", "–", "–")
	} else {
		n := float64(r.n)
		out = append(out,
			fmt.Sprintf("%.2f", r.hostPerGuest()), fmt.Sprintf("%.2f", r.cpu.qemu/n),
			fmt.Sprintf("%.1f", r.cpu.libvirtd), fmt.Sprintf("%.1f", r.cpu.jitsu),
			fmt.Sprintf("%.1f", r.rssPerGuest()), fmt.Sprintf("%.1f", float64(r.jitsuRSSKiB)/1024),
			fmt.Sprint(r.jitsuFDs), fmt.Sprint(r.virtFDs),
			lat(r.static), lat(r.uk), httpCell(r))
	}
	held := "yes"
	if r.fail != "" {
		held = "no: " + strings.ReplaceAll(r.fail, "|", "/")
	}
	return append(out, held)
}

// lat formats a latency sample's p50/p99, and its losses.
func lat(l latencies) string {
	s := msf(l.pct(50)) + " / " + msf(l.pct(99))
	if l.lost > 0 {
		s += fmt.Sprintf(" (%d lost)", l.lost)
	}
	return s
}

// httpCell is how many guests answered, and the slowest answer (none
// without HTTP: -image multiboot).
func httpCell(r row) string {
	if r.httpMax == 0 {
		return fmt.Sprintf("%d/%d", r.httpOK, r.n)
	}
	return fmt.Sprintf("%d/%d (max %s ms)", r.httpOK, r.n, msf(r.httpMax))
}
