// Command timeline prints what happened during a jitsu demo as a list of
// rows in milliseconds relative to a starting instant: the rows come from
// jitsu's JSON log (one zap JSON object per line: ts, level, msg, unikernel,
// from, to, reason, duration...) and from client-side events given on the
// command line (dig sent, first HTTP byte...). How log lines become rows is
// decided by the table in rules.go.
//
// Usage:
//
//	timeline -log jitsu.log -since UNIXNANO [-unikernel NAME] [-event UNIXNANO=LABEL]...
//	timeline -log jitsu.log -since UNIXNANO -idled
//
// With -idled it prints instead the unikernels that were stopped (idled out)
// after -since, one a line.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// kind classifies a rule's rows for -idled.
type kind int

const (
	kindOther kind = iota
	kindQuery
	kindStop
)

// rule turns matching log lines into a labelled row; see rules.go.
type rule struct {
	Msg    string
	Fields map[string]string
	Label  string
	Kind   kind
}

// compiledRule is a rule with its regular expressions compiled.
type compiledRule struct {
	rule
	msg    *regexp.Regexp
	fields map[string]*regexp.Regexp
}

// compile compiles every rule; a bad expression is a programming error.
func compile(rs []rule) ([]compiledRule, error) {
	out := make([]compiledRule, 0, len(rs))
	for i, r := range rs {
		c := compiledRule{rule: r, fields: map[string]*regexp.Regexp{}}
		var err error
		if c.msg, err = regexp.Compile("(?i)" + r.Msg); err != nil {
			return nil, fmt.Errorf("rule %d msg %q: %w", i, r.Msg, err)
		}
		for k, v := range r.Fields {
			if c.fields[k], err = regexp.Compile("(?i)" + v); err != nil {
				return nil, fmt.Errorf("rule %d field %s %q: %w", i, k, v, err)
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// entry is one log line, decoded.
type entry struct {
	ts     time.Time
	level  string
	msg    string
	fields map[string]string
}

// row is one line of the timeline.
type row struct {
	at      time.Time
	source  string // "jitsu" or "client"
	label   string
	kind    kind
	uk      string
	matched bool // produced by a rule, not an unknown line
}

// skipFields are never shown as extra fields of an unknown line.
var skipFields = map[string]bool{"ts": true, "level": true, "msg": true, "logger": true, "caller": true, "stacktrace": true}

// parseLine decodes one zap JSON line; ok is false for anything else.
func parseLine(line []byte) (entry, bool) {
	var raw map[string]any
	if err := json.Unmarshal(line, &raw); err != nil {
		return entry{}, false
	}
	e := entry{fields: map[string]string{}}
	for k, v := range raw {
		switch x := v.(type) {
		case string:
			e.fields[k] = x
		case float64:
			e.fields[k] = strconv.FormatFloat(x, 'f', -1, 64)
		case nil:
		case []any:
			// A list of addresses and the like: "a, b".
			parts := make([]string, len(x))
			for i, el := range x {
				parts[i] = fmt.Sprint(el)
			}
			e.fields[k] = strings.Join(parts, ", ")
		default:
			b, _ := json.Marshal(x)
			e.fields[k] = string(b)
		}
	}
	e.msg, e.level = e.fields["msg"], e.fields["level"]
	ts, ok := e.fields["ts"]
	if !ok {
		return entry{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		// zap's default epoch encoder writes seconds as a float.
		f, ferr := strconv.ParseFloat(ts, 64)
		if ferr != nil {
			return entry{}, false
		}
		t = time.Unix(0, int64(f*1e9))
	}
	e.ts = t
	return e, true
}

var placeholder = regexp.MustCompile(`\{([a-zA-Z_.]+)\}`)
var emptyParens = regexp.MustCompile(`\s*\(\s*\)`)

// render fills a label's {field} placeholders and tidies empty parts.
func render(label string, e entry) string {
	s := placeholder.ReplaceAllStringFunc(label, func(m string) string {
		k := m[1 : len(m)-1]
		if k == "msg" {
			return e.msg
		}
		return e.fields[k]
	})
	s = emptyParens.ReplaceAllString(s, "")
	s = strings.Join(strings.Fields(s), " ")
	s = strings.TrimSuffix(strings.TrimSuffix(s, " →"), ":")
	return strings.TrimPrefix(s, ": ")
}

// match returns the first rule matching e, or nil.
func match(rs []compiledRule, e entry) *compiledRule {
	for i := range rs {
		r := &rs[i]
		if !r.msg.MatchString(e.msg) {
			continue
		}
		ok := true
		for k, re := range r.fields {
			v, present := e.fields[k]
			if !present || !re.MatchString(v) {
				ok = false
				break
			}
		}
		if ok {
			return r
		}
	}
	return nil
}

// relevant says whether a line concerns the followed unikernel (any field
// equal to or containing its name), or is a warning or error.
func relevant(e entry, uk string) bool {
	if e.level == "warn" || e.level == "error" || e.level == "fatal" {
		return true
	}
	if uk == "" {
		return true
	}
	for k, v := range e.fields {
		if skipFields[k] {
			continue
		}
		if v == uk || strings.Contains(v, uk+".") || strings.HasPrefix(v, uk+"-") || strings.HasSuffix(v, "-"+uk) {
			return true
		}
	}
	return false
}

// concerns says whether a line names a different unikernel than uk.
func concernsOther(e entry, uk string) bool {
	v, ok := e.fields["unikernel"]
	return uk != "" && ok && v != "" && v != uk
}

// raw formats an unmatched line: its msg and its fields.
func raw(e entry) string {
	keys := make([]string, 0, len(e.fields))
	for k := range e.fields {
		if !skipFields[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("· ")
	b.WriteString(e.msg)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, e.fields[k])
	}
	if e.level != "" && e.level != "info" && e.level != "debug" {
		b.WriteString(" [" + e.level + "]")
	}
	return b.String()
}

// options are the command's inputs.
type options struct {
	since, until time.Time
	unikernel    string
	events       []row
}

// collect reads the log and returns the timeline rows in time order.
func collect(r io.Reader, rs []compiledRule, o options) ([]row, error) {
	rows := append([]row(nil), o.events...)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	for sc.Scan() {
		e, ok := parseLine(sc.Bytes())
		if !ok || e.ts.Before(o.since) || (!o.until.IsZero() && e.ts.After(o.until)) {
			continue
		}
		if concernsOther(e, o.unikernel) {
			continue
		}
		uk := e.fields["unikernel"]
		if m := match(rs, e); m != nil {
			if o.unikernel != "" && uk == "" && !relevant(e, o.unikernel) && m.Kind != kindQuery {
				continue
			}
			rows = append(rows, row{at: e.ts, source: "jitsu", label: render(m.Label, e), kind: m.Kind, uk: uk, matched: true})
			continue
		}
		if relevant(e, o.unikernel) && e.level != "debug" {
			rows = append(rows, row{at: e.ts, source: "jitsu", label: raw(e), uk: uk})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].at.Before(rows[j].at) })
	return rows, nil
}

// write prints rows relative to since.
func write(w io.Writer, rows []row, since time.Time) {
	for _, r := range rows {
		ms := float64(r.at.Sub(since).Microseconds()) / 1000
		fmt.Fprintf(w, "   %+9.1f ms  %-6s  %s\n", ms, r.source, r.label)
	}
}

// idled returns, in name order, the unikernels whose last matched row
// (queries aside) is a stop: they were running and then stopped.
func idled(rows []row) []string {
	stopped := map[string]bool{}
	for _, r := range rows {
		if r.uk == "" || !r.matched || r.kind == kindQuery {
			continue
		}
		stopped[r.uk] = r.kind == kindStop
	}
	var out []string
	for uk, s := range stopped {
		if s {
			out = append(out, uk)
		}
	}
	sort.Strings(out)
	return out
}

// eventFlag collects -event UNIXNANO=LABEL flags.
type eventFlag struct{ rows *[]row }

func (f eventFlag) String() string { return "" }

func (f eventFlag) Set(s string) error {
	at, label, ok := strings.Cut(s, "=")
	if !ok {
		return errors.New("want UNIXNANO=LABEL")
	}
	t, err := parseTime(at)
	if err != nil {
		return err
	}
	*f.rows = append(*f.rows, row{at: t, source: "client", label: label})
	return nil
}

// parseTime accepts Unix nanoseconds or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(0, n), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want Unix nanoseconds or RFC 3339", s)
	}
	return t, nil
}

func main() {
	var o options
	logPath := flag.String("log", "", "jitsu's JSON log file")
	since := flag.String("since", "", "start instant (Unix ns or RFC 3339); rows are relative to it")
	until := flag.String("until", "", "ignore log lines after this instant")
	flag.StringVar(&o.unikernel, "unikernel", "", "follow only this unikernel (empty: all)")
	flag.Var(eventFlag{&o.events}, "event", "client-side event UNIXNANO=LABEL (repeatable)")
	idle := flag.Bool("idled", false, "print the unikernels stopped after -since, one a line")
	flag.Parse()
	if *logPath == "" || *since == "" {
		flag.Usage()
		os.Exit(2)
	}
	var err error
	if o.since, err = parseTime(*since); err != nil {
		fmt.Fprintln(os.Stderr, "timeline:", err)
		os.Exit(2)
	}
	if *until != "" {
		if o.until, err = parseTime(*until); err != nil {
			fmt.Fprintln(os.Stderr, "timeline:", err)
			os.Exit(2)
		}
	}
	rs, err := compile(rules)
	if err != nil {
		fmt.Fprintln(os.Stderr, "timeline:", err)
		os.Exit(1)
	}
	f, err := os.Open(*logPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "timeline:", err)
		os.Exit(1)
	}
	defer f.Close()
	rows, err := collect(f, rs, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "timeline:", err)
		os.Exit(1)
	}
	if *idle {
		for _, uk := range idled(rows) {
			fmt.Println(uk)
		}
		return
	}
	write(os.Stdout, rows, o.since)
}
