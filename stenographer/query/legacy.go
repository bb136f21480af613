package query

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// parseLegacy parses the first release's syntax: whitespace-separated
// terms are intersected; within a term, '|' separates alternatives (union,
// binding tightest); each alternative is key=value with key one of ip, port,
// protocol (or proto), last.
func parseLegacy(text string, now time.Time) (Node, error) {
	var and []Node
	primitives := 0
	for _, term := range lex(text) {
		if term.text == "(" || term.text == ")" || term.text == "&&" || term.text == "||" {
			return nil, &SyntaxError{Pos: term.pos, Msg: "'" + term.text + "' is not allowed in a legacy (key=value) query"}
		}
		var or []Node
		pos := term.pos
		for _, alt := range strings.Split(term.text, "|") {
			if primitives++; primitives > MaxPrimitives {
				return nil, &SyntaxError{Pos: pos, Msg: fmt.Sprintf("more than %d primitives in one query", MaxPrimitives)}
			}
			n, err := legacyPrimitive(alt, pos, now)
			if err != nil {
				return nil, err
			}
			or = append(or, n)
			pos += len(alt) + 1
		}
		if len(or) == 1 {
			and = append(and, or[0])
		} else {
			and = append(and, Or{Children: or})
		}
	}
	if len(and) == 1 {
		return and[0], nil
	}
	return And{Children: and}, nil
}

func legacyPrimitive(s string, pos int, now time.Time) (Node, error) {
	key, val, ok := strings.Cut(s, "=")
	if !ok || val == "" {
		return nil, &SyntaxError{Pos: pos, Msg: "expected key=value (ip=, port=, protocol=, last=), got " + strconv.Quote(s)}
	}
	vpos := pos + len(key) + 1
	bad := func(msg string) error { return &SyntaxError{Pos: vpos, Msg: msg} }
	switch key {
	case "ip":
		if lo, hi, isRange := strings.Cut(val, "-"); isRange {
			a, err1 := netip.ParseAddr(lo)
			b, err2 := netip.ParseAddr(hi)
			if err1 != nil || err2 != nil {
				return nil, bad("ip=: " + strconv.Quote(val) + " is not an address range like 1.1.1.0-1.1.2.200")
			}
			a, b = a.Unmap(), b.Unmap()
			if a.Is4() != b.Is4() {
				return nil, bad("ip=: range " + val + " mixes IPv4 and IPv6")
			}
			if b.Less(a) {
				return nil, bad("ip=: range " + val + " ends before it starts")
			}
			return addrRangeKey(a, b, "ip="+a.String()+"-"+b.String()), nil
		}
		a, err := netip.ParseAddr(val)
		if err != nil {
			return nil, bad("ip=: " + strconv.Quote(val) + " is not an IP address")
		}
		a = a.Unmap()
		return addrRangeKey(a, a, "host "+a.String()), nil
	case "port":
		v, err := strconv.ParseUint(val, 10, 64)
		if err != nil || v > 65535 {
			return nil, bad("port=: " + strconv.Quote(val) + " is not a port (0-65535)")
		}
		return portKey(uint16(v)), nil
	case "protocol", "proto":
		v, err := strconv.ParseUint(val, 10, 64)
		if err != nil || v > 255 {
			return nil, bad(key + "=: " + strconv.Quote(val) + " is not a protocol number (0-255)")
		}
		return protoKey(uint8(v)), nil
	case "last":
		d, ok := relative(val)
		if !ok {
			return nil, bad("last=: " + strconv.Quote(val) + " is not a duration like 45m or 4h")
		}
		return Time{Before: false, At: now.Add(-d)}, nil
	}
	return nil, &SyntaxError{Pos: pos, Msg: "unknown key " + strconv.Quote(key) + " (expected ip, port, protocol, last)"}
}
