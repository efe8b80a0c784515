package config

import (
	"strconv"
	"strings"
)

// BurntSushi/toml v1.6.0 keeps key positions in unexported fields of
// MetaData, so the lines of keys are found here by a small scanner over the
// file text. It runs only after toml.Decode accepted the file, so it may
// assume valid TOML and only has to follow its structure: table headers,
// [[array]] headers (counting their index), dotted and quoted keys, strings
// of all four kinds, arrays (the line of every element) and inline tables.
//
// Paths use the notation of the Key field of Error: components joined by
// ".", array elements as "[N]" (0-based), keys that are not bare quoted as
// Go strings: `zone[0].records[2]`, `unikernel[1].ip`.

// joinKey appends the key k to the path parent.
func joinKey(parent, k string) string {
	if !isBareKey(k) {
		k = strconv.Quote(k)
	}
	if parent == "" {
		return k
	}
	return parent + "." + k
}

// joinIndex appends the array index i to the path parent.
func joinIndex(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

func isBareKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !isBareChar(byte(c)) || c > 0x7f {
			return false
		}
	}
	return true
}

func isBareChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// parentPath returns the path without its last component ("" for a
// top-level key).
func parentPath(path string) string {
	last := 0
	for i := 0; i < len(path); {
		switch path[i] {
		case '.':
			i++
		case '[':
			last = i
			for i < len(path) && path[i] != ']' {
				i++
			}
			i++
		case '"':
			last = i
			i++
			for i < len(path) && path[i] != '"' {
				if path[i] == '\\' {
					i++
				}
				i++
			}
			i++
		default:
			last = i
			for i < len(path) && path[i] != '.' && path[i] != '[' {
				i++
			}
		}
	}
	return strings.TrimSuffix(path[:last], ".")
}

// positions maps paths to the line they start on.
type positions map[string]int

// line returns the line of path, or of its nearest ancestor that has one,
// or 0.
func (p positions) line(path string) int {
	for path != "" {
		if l, ok := p[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

type posScanner struct {
	s      string
	i      int
	line   int
	pos    positions
	arrays map[string]int // path of an array of tables -> elements so far
}

// scanPositions returns the line of every table, key and array element of
// the valid TOML document src.
func scanPositions(src string) positions {
	sc := &posScanner{s: src, line: 1, pos: positions{}, arrays: map[string]int{}}
	cur := ""
	for {
		sc.skipBlank()
		if sc.eof() {
			return sc.pos
		}
		start := sc.i
		if sc.peek() == '[' {
			line := sc.line
			arr := strings.HasPrefix(sc.s[sc.i:], "[[")
			if arr {
				sc.i += 2
			} else {
				sc.i++
			}
			keys := sc.keyParts()
			cur = sc.tablePath(keys, arr)
			sc.set(cur, line)
			for c := sc.peek(); c == ']' || c == ' ' || c == '\t'; c = sc.peek() {
				sc.i++
			}
		} else {
			sc.keyValue(cur)
		}
		if sc.i == start { // cannot happen on valid TOML; never loop forever
			sc.i++
		}
	}
}

func (sc *posScanner) eof() bool { return sc.i >= len(sc.s) }

func (sc *posScanner) peek() byte {
	if sc.eof() {
		return 0
	}
	return sc.s[sc.i]
}

func (sc *posScanner) set(path string, line int) {
	if _, ok := sc.pos[path]; !ok {
		sc.pos[path] = line
	}
}

// tablePath resolves a header's keys to a path: components that name an
// array of tables refer to its latest element, and a [[header]] starts a
// new element.
func (sc *posScanner) tablePath(keys []string, arr bool) string {
	p := ""
	for j, k := range keys {
		p = joinKey(p, k)
		if j == len(keys)-1 && arr {
			n := sc.arrays[p]
			sc.arrays[p] = n + 1
			sc.set(p, sc.line)
			p = joinIndex(p, n)
		} else if n, ok := sc.arrays[p]; ok {
			p = joinIndex(p, n-1)
		}
	}
	return p
}

// skipSpaces skips blanks on the current line.
func (sc *posScanner) skipSpaces() {
	for !sc.eof() && (sc.peek() == ' ' || sc.peek() == '\t') {
		sc.i++
	}
}

// skipBlank skips blanks, newlines and comments.
func (sc *posScanner) skipBlank() {
	for !sc.eof() {
		switch sc.peek() {
		case ' ', '\t', '\r':
			sc.i++
		case '\n':
			sc.i++
			sc.line++
		case '#':
			for !sc.eof() && sc.peek() != '\n' {
				sc.i++
			}
		default:
			return
		}
	}
}

// keyParts reads a possibly dotted key.
func (sc *posScanner) keyParts() []string {
	var keys []string
	for {
		sc.skipSpaces()
		switch sc.peek() {
		case '"':
			start := sc.i
			sc.str()
			raw := sc.s[start:sc.i]
			if k, err := strconv.Unquote(raw); err == nil {
				keys = append(keys, k)
			} else {
				keys = append(keys, strings.Trim(raw, `"`))
			}
		case '\'':
			start := sc.i
			sc.str()
			keys = append(keys, strings.Trim(sc.s[start:sc.i], "'"))
		default:
			start := sc.i
			for !sc.eof() && isBareChar(sc.peek()) {
				sc.i++
			}
			keys = append(keys, sc.s[start:sc.i])
		}
		sc.skipSpaces()
		if sc.peek() != '.' {
			return keys
		}
		sc.i++
	}
}

// keyValue reads "key = value" in the table at path cur.
func (sc *posScanner) keyValue(cur string) {
	line := sc.line
	keys := sc.keyParts()
	p := cur
	for _, k := range keys {
		p = joinKey(p, k)
		sc.set(p, line)
	}
	sc.skipSpaces()
	if sc.peek() == '=' {
		sc.i++
	}
	sc.skipSpaces()
	sc.value(p)
}

// value reads one value, recording the lines of array elements and inline
// table keys below path p.
func (sc *posScanner) value(p string) {
	switch sc.peek() {
	case '"', '\'':
		sc.str()
	case '[':
		sc.i++
		for idx := 0; ; idx++ {
			sc.skipBlank()
			if sc.eof() {
				return
			}
			if sc.peek() == ']' {
				sc.i++
				return
			}
			ep := joinIndex(p, idx)
			sc.set(ep, sc.line)
			start := sc.i
			sc.value(ep)
			sc.skipBlank()
			if sc.peek() == ',' {
				sc.i++
			} else if sc.i == start {
				sc.i++
			}
		}
	case '{':
		sc.i++
		for {
			sc.skipBlank()
			if sc.eof() {
				return
			}
			if sc.peek() == '}' {
				sc.i++
				return
			}
			start := sc.i
			sc.keyValue(p)
			sc.skipBlank()
			if sc.peek() == ',' {
				sc.i++
			} else if sc.i == start {
				sc.i++
			}
		}
	default: // number, boolean, date-time
		for !sc.eof() && !strings.ContainsRune(",]}\n#", rune(sc.peek())) {
			sc.i++
		}
	}
}

// str reads a string of any of the four kinds, counting its newlines.
func (sc *posScanner) str() {
	q := sc.peek()
	triple := strings.Repeat(string(q), 3)
	multi := strings.HasPrefix(sc.s[sc.i:], triple)
	if multi {
		sc.i += 3
	} else {
		sc.i++
	}
	for !sc.eof() {
		c := sc.peek()
		switch {
		case c == '\\' && q == '"':
			sc.i++
			if sc.peek() == '\n' {
				sc.line++
			}
			sc.i++
		case c == '\n':
			sc.line++
			sc.i++
		case multi && strings.HasPrefix(sc.s[sc.i:], triple):
			sc.i += 3
			// Up to two more quotes belong to the content.
			for n := 0; n < 2 && sc.peek() == q; n++ {
				sc.i++
			}
			return
		case !multi && c == q:
			sc.i++
			return
		default:
			sc.i++
		}
	}
}
