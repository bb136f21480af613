package query

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax is wrapped by every *SyntaxError.
var ErrSyntax = errors.New("query: invalid query")

// SyntaxError reports what is wrong with a query and where: Pos is the
// 1-based character position of the offending token.
type SyntaxError struct {
	Pos int
	Msg string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid query at position %d: %s", e.Pos, e.Msg)
}

// Unwrap makes errors.Is(err, ErrSyntax) true.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// Limits on one query, so that no query can exhaust the daemon: the
// parser recurses once per parenthesis (700 KB of '(' overflowed the
// stack), and each primitive costs an index lookup per file and a
// position set held while the file is evaluated.
const (
	MaxDepth      = 100
	MaxPrimitives = 1000
)

// Parse parses a query in either syntax of SPEC §5. A query containing '='
// is in the legacy syntax of the first public release. now anchors relative
// times (`3h ago`, `last=3h`).
func Parse(text string, now time.Time) (Node, error) {
	if strings.TrimSpace(text) == "" {
		return nil, &SyntaxError{Pos: 1, Msg: "empty query"}
	}
	if strings.Contains(text, "=") {
		return parseLegacy(text, now)
	}
	p := &parser{toks: lex(text), now: now, end: len(text) + 1}
	n, err := p.expr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t != nil {
		return nil, p.errAt(t, "unexpected %q; expected 'and', 'or' or the end of the query", t.text)
	}
	return n, nil
}

type token struct {
	text string
	pos  int // 1-based
}

// lex splits a query into words, parentheses and the operators && and ||.
func lex(s string) []token {
	var out []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || c == '!':
			out = append(out, token{string(c), i + 1})
			i++
		case (c == '&' || c == '|') && i+1 < len(s) && s[i+1] == c:
			out = append(out, token{s[i : i+2], i + 1})
			i += 2
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()", rune(s[j])) &&
				!((s[j] == '&' || s[j] == '|') && j+1 < len(s) && s[j+1] == s[j]) {
				j++
			}
			if j == i { // a lone '&' or '|'
				j++
			}
			out = append(out, token{s[i:j], i + 1})
			i = j
		}
	}
	return out
}

type parser struct {
	toks       []token
	i          int
	now        time.Time
	end        int // position reported for "unexpected end"
	depth      int // parentheses open at the current token
	primitives int
}

func (p *parser) peek() *token {
	if p.i < len(p.toks) {
		return &p.toks[p.i]
	}
	return nil
}

func (p *parser) next() *token {
	t := p.peek()
	if t != nil {
		p.i++
	}
	return t
}

func (p *parser) errAt(t *token, format string, args ...any) error {
	pos := p.end
	if t != nil {
		pos = t.pos
	}
	return &SyntaxError{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// expr := term { op term }, with 'and' and 'or' of equal precedence,
// associating left to right as in pcap-filter.
func (p *parser) expr() (Node, error) {
	left, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t == nil || t.text == ")" {
			return left, nil
		}
		var isAnd bool
		switch t.text {
		case "and", "&&":
			isAnd = true
		case "or", "||":
		default:
			return nil, p.errAt(t, "unexpected %q; expected 'and' or 'or'", t.text)
		}
		p.next()
		right, err := p.term()
		if err != nil {
			return nil, err
		}
		left = combine(left, right, isAnd)
	}
}

// combine flattens runs of the same operator so (a and b) and c is one And.
func combine(left, right Node, isAnd bool) Node {
	if isAnd {
		if a, ok := left.(And); ok {
			return And{Children: append(a.Children, right)}
		}
		return And{Children: []Node{left, right}}
	}
	if o, ok := left.(Or); ok {
		return Or{Children: append(o.Children, right)}
	}
	return Or{Children: []Node{left, right}}
}

func (p *parser) term() (Node, error) {
	t := p.next()
	if t == nil {
		return nil, p.errAt(nil, "unexpected end of query; expected a primitive such as 'host 1.2.3.4' or '('")
	}
	switch t.text {
	case "(":
		if p.depth++; p.depth > MaxDepth {
			return nil, p.errAt(t, "parentheses nested deeper than %d levels", MaxDepth)
		}
		n, err := p.expr()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c == nil || c.text != ")" {
			return nil, p.errAt(c, "missing ')' to close '(' at position %d", t.pos)
		}
		p.depth--
		return n, nil
	case ")":
		return nil, p.errAt(t, "unexpected ')'")
	case "and", "or", "&&", "||":
		return nil, p.errAt(t, "%q needs a primitive before it", t.text)
	case "not", "!":
		// Binds tighter than 'and' and 'or', as in pcap-filter; each one
		// recurses, so it counts against the nesting limit.
		if p.depth++; p.depth > MaxDepth {
			return nil, p.errAt(t, "'not' and parentheses nested deeper than %d levels", MaxDepth)
		}
		c, err := p.term()
		if err != nil {
			return nil, err
		}
		p.depth--
		return Not{Child: c}, nil
	}
	if p.primitives++; p.primitives > MaxPrimitives {
		return nil, p.errAt(t, "more than %d primitives in one query", MaxPrimitives)
	}
	switch t.text {
	case "host":
		return p.host()
	case "net":
		return p.net()
	case "port":
		return p.port()
	case "src", "dst":
		return p.direction(t)
	case "ip":
		if k := p.next(); k == nil || k.text != "proto" {
			return nil, p.errAt(k, "expected 'proto' after 'ip'")
		}
		v, err := p.number("ip proto", 255)
		return protoKey(uint8(v)), err
	case "tcp":
		return protoKey(6), nil
	case "udp":
		return protoKey(17), nil
	case "icmp":
		return protoKey(1), nil
	case "vlan":
		v, err := p.number("vlan", 4095)
		return vlanKey(uint16(v)), err
	case "mpls":
		v, err := p.number("mpls", 1<<20-1)
		return mplsKey(uint32(v)), err
	case "before", "after":
		at, err := p.instant(t.text)
		return Time{Before: t.text == "before", At: at}, err
	case "iface":
		return p.iface()
	}
	return nil, p.errAt(t, "unknown primitive %q (expected host, net, port, src, dst, ip proto, tcp, udp, icmp, vlan, mpls, before, after, iface, not)", t.text)
}

func (p *parser) port() (Key, error) {
	v, err := p.number("port", 65535)
	return portKey(uint16(v)), err
}

// direction reads what follows `src` or `dst`: host, net or port.
func (p *parser) direction(t *token) (Node, error) {
	k := p.next()
	var key Key
	var err error
	switch {
	case k == nil:
		return nil, p.errAt(nil, "%s needs 'host', 'net' or 'port' after it", t.text)
	case k.text == "host":
		key, err = p.host()
	case k.text == "net":
		key, err = p.net()
	case k.text == "port":
		key, err = p.port()
	default:
		return nil, p.errAt(k, "%s needs 'host', 'net' or 'port' after it, not %q", t.text, k.text)
	}
	if err != nil {
		return nil, err
	}
	return Dir{Src: t.text == "src", Key: key}, nil
}

// iface NAME: a capture interface's name as the kernel allows it.
func (p *parser) iface() (Node, error) {
	t := p.next()
	if t == nil {
		return nil, p.errAt(nil, "iface needs an interface name")
	}
	switch t.text {
	case "(", ")", "and", "or", "&&", "||":
		return nil, p.errAt(t, "iface: %q is not an interface name", t.text)
	}
	if len(t.text) > 15 || strings.ContainsAny(t.text, "/:") {
		return nil, p.errAt(t, "iface: %q is not an interface name", t.text)
	}
	return Iface{Name: t.text}, nil
}

// number reads a decimal argument in [0, max].
func (p *parser) number(what string, max uint64) (uint64, error) {
	t := p.next()
	if t == nil {
		return 0, p.errAt(nil, "%s needs a number", what)
	}
	v, err := strconv.ParseUint(t.text, 10, 64)
	if err != nil {
		return 0, p.errAt(t, "%s needs a decimal number, got %q", what, t.text)
	}
	if v > max {
		return 0, p.errAt(t, "%s %d out of range (0-%d)", what, v, max)
	}
	return v, nil
}

func (p *parser) address(what string) (netip.Addr, *token, error) {
	t := p.next()
	if t == nil {
		return netip.Addr{}, nil, p.errAt(nil, "%s needs an IP address", what)
	}
	a, err := netip.ParseAddr(t.text)
	if err != nil {
		if looksLikeName(t.text) {
			return netip.Addr{}, t, p.errAt(t, "%s needs an IP address, not a host name (%q): names are not resolved", what, t.text)
		}
		return netip.Addr{}, t, p.errAt(t, "%s: %q is not an IP address", what, t.text)
	}
	if a.Zone() != "" {
		return netip.Addr{}, t, p.errAt(t, "%s: zones are not supported in %q", what, t.text)
	}
	return a.Unmap(), t, nil
}

func looksLikeName(s string) bool {
	if s == "" || strings.ContainsAny(s, ":/") {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' {
			return true
		}
	}
	return false
}

func (p *parser) host() (Key, error) {
	a, _, err := p.address("host")
	if err != nil {
		return Key{}, err
	}
	return addrRangeKey(a, a, "host "+a.String()), nil
}

// net A/N or net A mask M. Host bits below the prefix are ignored.
func (p *parser) net() (Key, error) {
	t := p.peek()
	if t != nil && strings.Contains(t.text, "/") {
		p.next()
		pfx, err := netip.ParsePrefix(t.text)
		if err != nil {
			addr, bits, _ := strings.Cut(t.text, "/")
			a, aerr := netip.ParseAddr(addr)
			if aerr == nil {
				max := 32
				if a.Is6() {
					max = 128
				}
				if n, nerr := strconv.Atoi(bits); nerr == nil && (n < 0 || n > max) {
					return Key{}, p.errAt(t, "net: prefix length %d too long for %s (at most %d)", n, addr, max)
				}
			}
			return Key{}, p.errAt(t, "net: %q is not a network like 10.0.0.0/8", t.text)
		}
		lo, hi := prefixRange(pfx)
		return addrRangeKey(lo, hi, "net "+pfx.Masked().String()), nil
	}
	a, at, err := p.address("net")
	if err != nil {
		return Key{}, err
	}
	if m := p.peek(); m == nil || m.text != "mask" {
		// pcap-filter's `net 10.0.0.0` without a length: a single network
		// address is ambiguous, so ask for the length.
		return Key{}, p.errAt(at, "net needs a prefix length (10.0.0.0/8) or 'mask'")
	}
	p.next()
	mt := p.next()
	if mt == nil {
		return Key{}, p.errAt(nil, "mask needs a netmask like 255.255.0.0")
	}
	mask, err := netip.ParseAddr(mt.text)
	if err != nil || mask.Is4() != a.Is4() {
		return Key{}, p.errAt(mt, "mask: %q is not a netmask of the same family as %s", mt.text, a)
	}
	bits, ok := maskBits(mask)
	if !ok {
		return Key{}, p.errAt(mt, "mask: %s is not a contiguous netmask", mask)
	}
	pfx := netip.PrefixFrom(a, bits)
	lo, hi := prefixRange(pfx)
	return addrRangeKey(lo, hi, "net "+pfx.Masked().String()), nil
}

func maskBits(m netip.Addr) (int, bool) {
	b := m.AsSlice()
	n, seenZero := 0, false
	for _, x := range b {
		for i := 7; i >= 0; i-- {
			if x&(1<<i) != 0 {
				if seenZero {
					return 0, false
				}
				n++
			} else {
				seenZero = true
			}
		}
	}
	return n, true
}

// instant reads RFC 3339 time or "<N>m ago" / "<N>h ago".
func (p *parser) instant(what string) (time.Time, error) {
	t := p.next()
	if t == nil {
		return time.Time{}, p.errAt(nil, "%s needs a time (2006-01-02T15:04:05Z or '3h ago')", what)
	}
	if at, err := time.Parse(time.RFC3339Nano, t.text); err == nil {
		return at, nil
	}
	d, ok := relative(t.text)
	if !ok {
		return time.Time{}, p.errAt(t, "%s: %q is not a time (2006-01-02T15:04:05Z) or a duration like 45m or 3h", what, t.text)
	}
	if a := p.next(); a == nil || a.text != "ago" {
		return time.Time{}, p.errAt(a, "%s %s needs 'ago'", what, t.text)
	}
	return p.now.Add(-d), nil
}

// relative parses an integer number of minutes or hours: 45m, 3h.
func relative(s string) (time.Duration, bool) {
	if len(s) < 2 {
		return 0, false
	}
	unit := time.Minute
	switch s[len(s)-1] {
	case 'm':
	case 'h':
		unit = time.Hour
	default:
		return 0, false
	}
	n, err := strconv.ParseUint(s[:len(s)-1], 10, 32)
	if err != nil {
		return 0, false
	}
	return time.Duration(n) * unit, true
}
