// Package docket translates Docket's request forms (a /pcap/<terms> path,
// form fields, a JSON object) into the sensor query language (SPEC §5).
//
// Input: the terms. Output: a Query: the clauses, each one term of the
// sensor language ("host 1.2.3.4", "after 210m ago"), and their AND.
// The clauses are what identifies a request independent of term order
// (Clauses sorted is the key the job dedup uses); Text keeps the order
// given, which is what the analyst reads back.
package docket

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Query is a translated request.
type Query struct {
	Clauses []string
	Text    string
}

// Sorted returns the clauses in sorted order (a copy).
func (q Query) Sorted() []string {
	s := append([]string(nil), q.Clauses...)
	sort.Strings(s)
	return s
}

func build(clauses []string) (Query, error) {
	if len(clauses) == 0 {
		return Query{}, fmt.Errorf("docket: no terms")
	}
	return Query{Clauses: clauses, Text: strings.Join(clauses, " and ")}, nil
}

// FromPath translates a path such as /host/1.2.3.4/port/80/udp/after/3m/
// (with or without a leading /pcap).
func FromPath(path string) (Query, error) {
	var segs []string
	for _, s := range strings.Split(path, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	if len(segs) > 0 && segs[0] == "pcap" {
		segs = segs[1:]
	}
	var clauses []string
	for i := 0; i < len(segs); {
		term := strings.ToLower(segs[i])
		i++
		arg := func() (string, error) {
			if i >= len(segs) {
				return "", fmt.Errorf("docket: /%s/ needs a value", term)
			}
			i++
			return segs[i-1], nil
		}
		switch term {
		case "tcp", "udp", "icmp":
			clauses = append(clauses, term)
		case "host", "port":
			for n := 0; n < 2; n++ {
				if n == 1 && (i >= len(segs) || !isValue(term, segs[i])) {
					break
				}
				v, err := arg()
				if err != nil {
					return Query{}, err
				}
				c, err := clause(term, v)
				if err != nil {
					return Query{}, err
				}
				clauses = append(clauses, c)
			}
		case "net":
			for n := 0; n < 2; n++ {
				if n == 1 && (i >= len(segs) || net.ParseIP(segs[i]) == nil) {
					break
				}
				v, err := arg()
				if err != nil {
					return Query{}, err
				}
				// The prefix length is the next segment: a CIDR's slash
				// splits it in a path.
				if i < len(segs) && isPrefixLen(segs[i]) {
					v += "/" + segs[i]
					i++
				}
				c, err := clause("net", v)
				if err != nil {
					return Query{}, err
				}
				clauses = append(clauses, c)
			}
		case "proto", "before", "after":
			v, err := arg()
			if err != nil {
				return Query{}, err
			}
			c, err := clause(term, v)
			if err != nil {
				return Query{}, err
			}
			clauses = append(clauses, c)
		default:
			return Query{}, fmt.Errorf("docket: unknown term /%s/", segs[i-1])
		}
	}
	return build(clauses)
}

func isValue(term, s string) bool {
	if term == "host" {
		return net.ParseIP(s) != nil
	}
	_, err := strconv.ParseUint(s, 10, 16)
	return err == nil
}

func isPrefixLen(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= 128
}

// formKeys are the form and JSON field names, in the order their clauses
// are emitted.
var formKeys = []string{"host", "net", "port", "proto", "proto-name", "before", "after", "before-ago", "after-ago"}

// FromForm translates form fields (host=, net=, port=, proto=,
// proto-name=tcp, before=, after=, before-ago=45m, after-ago=3h30). host,
// net and port may be given twice.
func FromForm(v url.Values) (Query, error) {
	for k := range v {
		if !known(k) {
			return Query{}, fmt.Errorf("docket: unknown field %q", k)
		}
	}
	var clauses []string
	for _, k := range formKeys {
		vals := v[k]
		if len(vals) > 2 || (len(vals) > 1 && k != "host" && k != "net" && k != "port") {
			return Query{}, fmt.Errorf("docket: field %q given %d times", k, len(vals))
		}
		for _, x := range vals {
			c, err := clause(k, x)
			if err != nil {
				return Query{}, err
			}
			clauses = append(clauses, c)
		}
	}
	return build(clauses)
}

// FromJSON translates a JSON object with the form's field names; each
// value is a string or number, host/net/port also a list of one or two.
func FromJSON(r io.Reader) (Query, error) {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(r)
	if err := dec.Decode(&m); err != nil {
		return Query{}, fmt.Errorf("docket: JSON body: %w", err)
	}
	form := url.Values{}
	for k, raw := range m {
		var list []any
		if err := json.Unmarshal(raw, &list); err != nil {
			var one any
			if err := json.Unmarshal(raw, &one); err != nil {
				return Query{}, fmt.Errorf("docket: JSON field %q: %w", k, err)
			}
			list = []any{one}
		}
		for _, x := range list {
			switch x := x.(type) {
			case string:
				form.Add(k, x)
			case float64:
				form.Add(k, strconv.FormatFloat(x, 'f', -1, 64))
			default:
				return Query{}, fmt.Errorf("docket: JSON field %q: want a string or number, got %T", k, x)
			}
		}
	}
	return FromForm(form)
}

func known(k string) bool {
	for _, f := range formKeys {
		if f == k {
			return true
		}
	}
	return false
}

// clause translates one term and its value.
func clause(term, v string) (string, error) {
	v = strings.TrimSpace(v)
	switch term {
	case "host":
		if net.ParseIP(v) == nil {
			return "", fmt.Errorf("docket: host %q is not an IP address", v)
		}
		return "host " + v, nil
	case "net":
		if _, _, err := net.ParseCIDR(v); err != nil {
			return "", fmt.Errorf("docket: net %q is not address/length", v)
		}
		return "net " + v, nil
	case "port":
		if _, err := strconv.ParseUint(v, 10, 16); err != nil {
			return "", fmt.Errorf("docket: port %q is not 0-65535", v)
		}
		return "port " + v, nil
	case "proto":
		if _, err := strconv.ParseUint(v, 10, 8); err != nil {
			return "", fmt.Errorf("docket: proto %q is not 0-255", v)
		}
		return "ip proto " + v, nil
	case "proto-name":
		switch p := strings.ToLower(v); p {
		case "tcp", "udp", "icmp":
			return p, nil
		}
		return "", fmt.Errorf("docket: proto-name %q is not tcp, udp or icmp", v)
	case "before", "after":
		if t, ok := parseTime(v); ok {
			return term + " " + t.UTC().Format(time.RFC3339), nil
		}
		m, err := minutes(v)
		if err != nil {
			return "", fmt.Errorf("docket: %s %q is neither a date, an RFC 3339 time nor an interval: %w", term, v, err)
		}
		return fmt.Sprintf("%s %dm ago", term, m), nil
	case "before-ago", "after-ago":
		m, err := minutes(v)
		if err != nil {
			return "", fmt.Errorf("docket: %s %q: %w", term, v, err)
		}
		return fmt.Sprintf("%s %dm ago", strings.TrimSuffix(term, "-ago"), m), nil
	}
	return "", fmt.Errorf("docket: unknown term %q", term)
}

func parseTime(v string) (time.Time, bool) {
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// minutes reads an interval in hours and minutes, decimals allowed: 45m,
// 3h, 3.5h, 3h30m, 3h30 (minutes after the hours need no unit). The
// sensor language takes whole minutes, so a fraction of a minute is an
// error rather than silently rounded.
func minutes(v string) (int64, error) {
	s := strings.ToLower(v)
	var total float64
	seen := false
	for s != "" {
		j := 0
		for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
			j++
		}
		if j == 0 {
			return 0, fmt.Errorf("want a number at %q", s)
		}
		n, err := strconv.ParseFloat(s[:j], 64)
		if err != nil {
			return 0, fmt.Errorf("bad number %q", s[:j])
		}
		unit := "m"
		if j < len(s) {
			unit = s[j : j+1]
			j++
		} else if !seen {
			return 0, fmt.Errorf("needs a unit (h or m)")
		}
		switch unit {
		case "h":
			total += n * 60
		case "m":
			total += n
		default:
			return 0, fmt.Errorf("unit %q is not h or m", unit)
		}
		seen = true
		s = s[j:]
	}
	m := int64(total)
	if float64(m) != total {
		return 0, fmt.Errorf("%g minutes is not a whole number of minutes", total)
	}
	return m, nil
}
