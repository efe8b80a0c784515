package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem found in a configuration file: where it is (file
// and line, 0 when unknown), which key it concerns (a TOML path such as
// "unikernel[1].ip", "" when none) and what is wrong.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

// Error formats the problem as "FILE:LINE: KEY: MSG", leaving out the parts
// that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a configuration file, in file order.
// Parse and Load return it (as *Errors) whenever a file does not validate;
// no partial configuration is returned with it.
type Errors struct {
	List []*Error
}

// Error prints one problem per line.
func (es *Errors) Error() string {
	lines := make([]string, len(es.List))
	for i, e := range es.List {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual problems, for errors.As.
func (es *Errors) Unwrap() []error {
	out := make([]error, len(es.List))
	for i, e := range es.List {
		out[i] = e
	}
	return out
}

// sort orders the problems by line, keeping the order they were found in
// for problems on the same line, and drops exact duplicates.
func (es *Errors) sort() {
	sort.SliceStable(es.List, func(i, j int) bool { return es.List[i].Line < es.List[j].Line })
	seen := make(map[Error]bool, len(es.List))
	out := es.List[:0]
	for _, e := range es.List {
		if seen[*e] {
			continue
		}
		seen[*e] = true
		out = append(out, e)
	}
	es.List = out
}
