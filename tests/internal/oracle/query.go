package oracle

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Query is a parsed query of the subset of the Stenographer language used
// by oracle.tsv: host, net A/N, net A mask M, port, ip proto, tcp, udp,
// icmp, vlan, mpls, and/or (equal precedence, left to right), parentheses;
// and src/dst before host, net and port, and not/! binding tightest.
// Match evaluates it on one packet's keys (Packet's, for src/dst), which
// is what an index lookup with set algebra computes per file.
type Query interface {
	Match(s Set) bool
}

type keyQuery struct{ k Key }

func (q keyQuery) Match(s Set) bool { return s.Has(q.k) }

type netQuery struct {
	p   netip.Prefix
	dir Type // 0, Src or Dst
}

func (q netQuery) Match(s Set) bool {
	for _, k := range s {
		if (k.Type == IPv4|q.dir || k.Type == IPv6|q.dir) && q.p.Contains(k.Addr) {
			return true
		}
	}
	return false
}

type notQuery struct{ q Query }

func (q notQuery) Match(s Set) bool { return !q.q.Match(s) }

type binQuery struct {
	and  bool
	l, r Query
}

func (q binQuery) Match(s Set) bool {
	if q.and {
		return q.l.Match(s) && q.r.Match(s)
	}
	return q.l.Match(s) || q.r.Match(s)
}

// ParseQuery parses a query of the subset above.
func ParseQuery(text string) (Query, error) {
	p := &qparser{toks: tokenize(text)}
	q, err := p.expr()
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", text, err)
	}
	if p.i != len(p.toks) {
		return nil, fmt.Errorf("query %q: unexpected %q", text, p.toks[p.i])
	}
	return q, nil
}

// IsPrimitive reports whether the query is one primitive (no and/or).
func IsPrimitive(q Query) bool {
	_, bin := q.(binQuery)
	return !bin
}

func tokenize(s string) []string {
	s = strings.NewReplacer("(", " ( ", ")", " ) ", "!", " ! ").Replace(s)
	return strings.Fields(s)
}

type qparser struct {
	toks []string
	i    int
	dir  Type // of the primitive being parsed: 0, Src or Dst
}

func (p *qparser) next() (string, error) {
	if p.i >= len(p.toks) {
		return "", fmt.Errorf("unexpected end")
	}
	p.i++
	return p.toks[p.i-1], nil
}

func (p *qparser) expr() (Query, error) {
	q, err := p.term()
	if err != nil {
		return nil, err
	}
	for p.i < len(p.toks) {
		op := p.toks[p.i]
		if op != "and" && op != "or" && op != "&&" && op != "||" {
			break
		}
		p.i++
		r, err := p.term()
		if err != nil {
			return nil, err
		}
		q = binQuery{and: op == "and" || op == "&&", l: q, r: r}
	}
	return q, nil
}

func (p *qparser) num(max uint64) (uint32, error) {
	t, err := p.next()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(t, 10, 32)
	if err != nil || n > max {
		return 0, fmt.Errorf("bad number %q", t)
	}
	return uint32(n), nil
}

func (p *qparser) term() (Query, error) {
	t, err := p.next()
	if err != nil {
		return nil, err
	}
	switch t {
	case "not", "!":
		q, err := p.term()
		return notQuery{q}, err
	case "src", "dst":
		p.dir = map[string]Type{"src": Src, "dst": Dst}[t]
		defer func() { p.dir = 0 }()
		if p.i >= len(p.toks) || !strings.Contains(" host net port ", " "+p.toks[p.i]+" ") {
			return nil, fmt.Errorf("%s needs host, net or port", t)
		}
		return p.term()
	case "(":
		q, err := p.expr()
		if err != nil {
			return nil, err
		}
		if c, err := p.next(); err != nil || c != ")" {
			return nil, fmt.Errorf("missing )")
		}
		return q, nil
	case "tcp":
		return keyQuery{Key{Type: Proto, Num: 6}}, nil
	case "udp":
		return keyQuery{Key{Type: Proto, Num: 17}}, nil
	case "icmp":
		return keyQuery{Key{Type: Proto, Num: 1}}, nil
	case "ip":
		if w, err := p.next(); err != nil || w != "proto" {
			return nil, fmt.Errorf("expected proto after ip")
		}
		n, err := p.num(255)
		return keyQuery{Key{Type: Proto, Num: n}}, err
	case "port":
		n, err := p.num(65535)
		return keyQuery{Key{Type: Port | p.dir, Num: n}}, err
	case "vlan":
		n, err := p.num(4095)
		return keyQuery{Key{Type: VLAN, Num: n}}, err
	case "mpls":
		n, err := p.num(1<<20 - 1)
		return keyQuery{Key{Type: MPLS, Num: n}}, err
	case "host":
		a, err := p.next()
		if err != nil {
			return nil, err
		}
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return nil, err
		}
		typ := IPv6
		if addr.Is4() {
			typ = IPv4
		}
		return keyQuery{Key{Type: typ | p.dir, Addr: addr}}, nil
	case "net":
		a, err := p.next()
		if err != nil {
			return nil, err
		}
		if p.i < len(p.toks) && p.toks[p.i] == "mask" {
			p.i++
			m, err := p.next()
			if err != nil {
				return nil, err
			}
			addr, err1 := netip.ParseAddr(a)
			mask, err2 := netip.ParseAddr(m)
			if err1 != nil || err2 != nil || addr.BitLen() != mask.BitLen() {
				return nil, fmt.Errorf("bad net %s mask %s", a, m)
			}
			bits := 0
			for _, b := range mask.AsSlice() {
				for i := 7; i >= 0; i-- {
					if b&(1<<i) != 0 {
						bits++
					}
				}
			}
			return netQuery{netip.PrefixFrom(addr, bits).Masked(), p.dir}, nil
		}
		pfx, err := netip.ParsePrefix(a)
		if err != nil {
			return nil, err
		}
		return netQuery{pfx.Masked(), p.dir}, nil
	}
	return nil, fmt.Errorf("unexpected %q", t)
}
