package query

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2024, 5, 6, 12, 0, 0, 0, time.UTC)

func TestParse(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"host 1.2.3.4", "host 1.2.3.4"},
		{"host 2001:db8::1", "host 2001:db8::1"},
		{"host ::ffff:1.2.3.4", "host 1.2.3.4"},
		{"net 10.0.0.0/8", "net 10.0.0.0/8"},
		{"net 10.1.2.3/8", "net 10.0.0.0/8"},
		{"net 10.0.0.0 mask 255.0.0.0", "net 10.0.0.0/8"},
		{"net 2001:db8::/32", "net 2001:db8::/32"},
		{"port 53", "port 53"},
		{"port 0", "port 0"},
		{"port 65535", "port 65535"},
		{"ip proto 47", "ip proto 47"},
		{"tcp", "ip proto 6"},
		{"udp", "ip proto 17"},
		{"icmp", "ip proto 1"},
		{"vlan 100", "vlan 100"},
		{"mpls 1024", "mpls 1024"},
		{"before 2024-01-02T03:04:05Z", "before 2024-01-02T03:04:05Z"},
		{"after 2024-01-02T03:04:05-07:00", "after 2024-01-02T10:04:05Z"},
		{"after 3h ago", "after 2024-05-06T09:00:00Z"},
		{"before 45m ago", "before 2024-05-06T11:15:00Z"},
		// and/or have equal precedence and associate left to right.
		{"host 1.1.1.1 and port 80 or port 443", "(host 1.1.1.1 and port 80) or port 443"},
		{"host 1.1.1.1 or port 80 and port 443", "(host 1.1.1.1 or port 80) and port 443"},
		{"host 1.1.1.1 and (port 80 or port 443)", "host 1.1.1.1 and (port 80 or port 443)"},
		{"tcp && port 80 || udp", "(ip proto 6 and port 80) or ip proto 17"},
		{"tcp&&port 80", "ip proto 6 and port 80"},
		{"((tcp))", "ip proto 6"},
		{"port 1 and port 2 and port 3", "port 1 and port 2 and port 3"},
		{"(port 1 or ip proto 2) and after 3h ago", "(port 1 or ip proto 2) and after 2024-05-06T09:00:00Z"},
		{"iface eth1", "iface eth1"},
		{"iface eth1 and port 80", "iface eth1 and port 80"},
		{"(iface a or iface b.100) and tcp", "(iface a or iface b.100) and ip proto 6"},
		{"iface x&&tcp", "iface x and ip proto 6"},
		// Direction and negation; 'not' binds tighter than 'and'/'or'.
		{"src host 1.2.3.4", "src host 1.2.3.4"},
		{"dst host 2001:db8::1", "dst host 2001:db8::1"},
		{"src net 10.1.0.0/16", "src net 10.1.0.0/16"},
		{"dst net 10.0.0.0 mask 255.0.0.0", "dst net 10.0.0.0/8"},
		{"src port 53 and dst port 80", "src port 53 and dst port 80"},
		{"not tcp", "not ip proto 6"},
		{"!tcp", "not ip proto 6"},
		{"! tcp && !udp", "not ip proto 6 and not ip proto 17"},
		{"not host 1.1.1.1 and port 80", "not host 1.1.1.1 and port 80"},
		{"not (host 1.1.1.1 and port 80)", "not (host 1.1.1.1 and port 80)"},
		{"port 80 or not src port 80", "port 80 or not src port 80"},
		{"not not tcp", "not not ip proto 6"},
		{"not after 3h ago", "not after 2024-05-06T09:00:00Z"},
		{"host 1.1.1.1&&!(port 22||port 80)", "host 1.1.1.1 and not (port 22 or port 80)"},
		// Legacy syntax.
		{"ip=1.1.1.1", "host 1.1.1.1"},
		{"ip=1.1.1.0-1.1.2.200", "ip=1.1.1.0-1.1.2.200"},
		{"ip=2001:db8::1-2001:db8::ff", "ip=2001:db8::1-2001:db8::ff"},
		{"port=80", "port 80"},
		{"protocol=6", "ip proto 6"},
		{"proto=17", "ip proto 17"},
		{"last=4h", "after 2024-05-06T08:00:00Z"},
		{"last=45m", "after 2024-05-06T11:15:00Z"},
		{"ip=1.1.1.1 port=80|port=443 last=2h", "host 1.1.1.1 and (port 80 or port 443) and after 2024-05-06T10:00:00Z"},
		{"ip=1.1.1.1 ip=2.2.2.2|ip=3.3.3.3", "host 1.1.1.1 and (host 2.2.2.2 or host 3.3.3.3)"},
	}
	for _, tc := range tests {
		n, err := Parse(tc.in, now)
		if err != nil {
			t.Errorf("Parse(%q) error: %v", tc.in, err)
			continue
		}
		if got := n.String(); got != tc.want {
			t.Errorf("Parse(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseKeys(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi string
	}{
		{"port 80", "\x02\x00\x50", "\x02\x00\x50"},
		{"ip proto 17", "\x01\x11", "\x01\x11"},
		{"vlan 4095", "\x03\x0f\xff", "\x03\x0f\xff"},
		{"mpls 1048575", "\x05\x00\x0f\xff\xff", "\x05\x00\x0f\xff\xff"},
		{"host 10.0.0.1", "\x04\x0a\x00\x00\x01", "\x04\x0a\x00\x00\x01"},
		{"net 192.168.0.0/16", "\x04\xc0\xa8\x00\x00", "\x04\xc0\xa8\xff\xff"},
		{"net 0.0.0.0/0", "\x04\x00\x00\x00\x00", "\x04\xff\xff\xff\xff"},
		{"net fe80::/10", "\x06\xfe\x80" + string(make([]byte, 14)), "\x06\xfe\xbf" + "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"},
	}
	for _, tc := range tests {
		n, err := Parse(tc.in, now)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.in, err)
		}
		k := n.(Key)
		if string(k.Lo) != tc.lo || string(k.Hi) != tc.hi {
			t.Errorf("Parse(%q) = [%x, %x], want [%x, %x]", tc.in, k.Lo, k.Hi, tc.lo, tc.hi)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "invalid query at position 1: empty query"},
		{"   ", "invalid query at position 1: empty query"},
		{"port 65536", "invalid query at position 6: port 65536 out of range (0-65535)"},
		{"port 99999999999999999999", `invalid query at position 6: port needs a decimal number, got "99999999999999999999"`},
		{"port -1", `invalid query at position 6: port needs a decimal number, got "-1"`},
		{"port http", `invalid query at position 6: port needs a decimal number, got "http"`},
		{"port", "invalid query at position 5: port needs a number"},
		{"ip proto 256", "invalid query at position 10: ip proto 256 out of range (0-255)"},
		{"ip 6", "invalid query at position 4: expected 'proto' after 'ip'"},
		{"ip", "invalid query at position 3: expected 'proto' after 'ip'"},
		{"vlan 4096", "invalid query at position 6: vlan 4096 out of range (0-4095)"},
		{"mpls 1048576", "invalid query at position 6: mpls 1048576 out of range (0-1048575)"},
		{"host example.com", `invalid query at position 6: host needs an IP address, not a host name ("example.com"): names are not resolved`},
		{"host 1.2.3", `invalid query at position 6: host: "1.2.3" is not an IP address`},
		{"host 1.2.3.4.5", `invalid query at position 6: host: "1.2.3.4.5" is not an IP address`},
		{"host", "invalid query at position 5: host needs an IP address"},
		{"host fe80::1%eth0", `invalid query at position 6: host: zones are not supported in "fe80::1%eth0"`},
		{"net 10.0.0.0/33", "invalid query at position 5: net: prefix length 33 too long for 10.0.0.0 (at most 32)"},
		{"net 2001:db8::/129", "invalid query at position 5: net: prefix length 129 too long for 2001:db8:: (at most 128)"},
		{"net 10.0.0.0/x", `invalid query at position 5: net: "10.0.0.0/x" is not a network like 10.0.0.0/8`},
		{"net 10.0.0.0", "invalid query at position 5: net needs a prefix length (10.0.0.0/8) or 'mask'"},
		{"net 10.0.0.0 mask 255.0.255.0", "invalid query at position 19: mask: 255.0.255.0 is not a contiguous netmask"},
		{"net 10.0.0.0 mask ffff::", `invalid query at position 19: mask: "ffff::" is not a netmask of the same family as 10.0.0.0`},
		{"tcp and", "invalid query at position 8: unexpected end of query; expected a primitive such as 'host 1.2.3.4' or '('"},
		{"and tcp", `invalid query at position 1: "and" needs a primitive before it`},
		{"tcp udp", `invalid query at position 5: unexpected "udp"; expected 'and' or 'or'`},
		{"(tcp", "invalid query at position 5: missing ')' to close '(' at position 1"},
		{"tcp)", `invalid query at position 4: unexpected ")"; expected 'and', 'or' or the end of the query`},
		{"()", "invalid query at position 2: unexpected ')'"},
		{"TCP", `invalid query at position 1: unknown primitive "TCP" (expected host, net, port, src, dst, ip proto, tcp, udp, icmp, vlan, mpls, before, after, iface, not)`},
		{"NOT tcp", `invalid query at position 1: unknown primitive "NOT" (expected host, net, port, src, dst, ip proto, tcp, udp, icmp, vlan, mpls, before, after, iface, not)`},
		{"not", "invalid query at position 4: unexpected end of query; expected a primitive such as 'host 1.2.3.4' or '('"},
		{"tcp and not", "invalid query at position 12: unexpected end of query; expected a primitive such as 'host 1.2.3.4' or '('"},
		{"not )", "invalid query at position 5: unexpected ')'"},
		{"! and tcp", `invalid query at position 3: "and" needs a primitive before it`},
		{"src", "invalid query at position 4: src needs 'host', 'net' or 'port' after it"},
		{"dst vlan 3", `invalid query at position 5: dst needs 'host', 'net' or 'port' after it, not "vlan"`},
		{"src port 70000", "invalid query at position 10: port 70000 out of range (0-65535)"},
		{"dst host example.com", `invalid query at position 10: host needs an IP address, not a host name ("example.com"): names are not resolved`},
		{"src net 10.0.0.0/33", "invalid query at position 9: net: prefix length 33 too long for 10.0.0.0 (at most 32)"},
		{"tcp not port 80", `invalid query at position 5: unexpected "not"; expected 'and' or 'or'`},
		{strings.Repeat("not ", MaxDepth+1) + "tcp", "invalid query at position 401: 'not' and parentheses nested deeper than 100 levels"},
		{"iface", "invalid query at position 6: iface needs an interface name"},
		{"iface abcdefghijklmnop", `invalid query at position 7: iface: "abcdefghijklmnop" is not an interface name`},
		{"tcp and iface a/b", `invalid query at position 15: iface: "a/b" is not an interface name`},
		{"iface and tcp", `invalid query at position 7: iface: "and" is not an interface name`},
		{"iface (eth0)", `invalid query at position 7: iface: "(" is not an interface name`},
		{"tcp & udp", `invalid query at position 5: unexpected "&"; expected 'and' or 'or'`},
		{"after", "invalid query at position 6: after needs a time (2006-01-02T15:04:05Z or '3h ago')"},
		{"after 3d ago", `invalid query at position 7: after: "3d" is not a time (2006-01-02T15:04:05Z) or a duration like 45m or 3h`},
		{"after 3h", "invalid query at position 9: after 3h needs 'ago'"},
		{"before 2024-13-01T00:00:00Z", `invalid query at position 8: before: "2024-13-01T00:00:00Z" is not a time (2006-01-02T15:04:05Z) or a duration like 45m or 3h`},
		{"before 1.5h ago", `invalid query at position 8: before: "1.5h" is not a time (2006-01-02T15:04:05Z) or a duration like 45m or 3h`},
		// Legacy syntax.
		{"port=65536", `invalid query at position 6: port=: "65536" is not a port (0-65535)`},
		{"ip=1.1.1", `invalid query at position 4: ip=: "1.1.1" is not an IP address`},
		{"ip=1.1.2.0-1.1.1.0", "invalid query at position 4: ip=: range 1.1.2.0-1.1.1.0 ends before it starts"},
		{"ip=1.1.1.1-::1", "invalid query at position 4: ip=: range 1.1.1.1-::1 mixes IPv4 and IPv6"},
		{"protocol=300", `invalid query at position 10: protocol=: "300" is not a protocol number (0-255)`},
		{"last=4d", `invalid query at position 6: last=: "4d" is not a duration like 45m or 4h`},
		{"host=1.1.1.1", `invalid query at position 1: unknown key "host" (expected ip, port, protocol, last)`},
		{"port=80 tcp", `invalid query at position 9: expected key=value (ip=, port=, protocol=, last=), got "tcp"`},
		{"port=80|port=", `invalid query at position 9: expected key=value (ip=, port=, protocol=, last=), got "port="`},
		{"port=80 (port=1)", "invalid query at position 9: '(' is not allowed in a legacy (key=value) query"},
		// Limits: nesting (the parser recurses per parenthesis) and size.
		{strings.Repeat("(", 1<<20), "invalid query at position 101: parentheses nested deeper than 100 levels"},
		{strings.Repeat("(", 101) + "tcp" + strings.Repeat(")", 101), "invalid query at position 101: parentheses nested deeper than 100 levels"},
		{strings.Repeat("tcp or ", 16000) + "tcp", "invalid query at position 7001: more than 1000 primitives in one query"},
		{strings.Repeat("(tcp) and ", 1000) + "udp", "invalid query at position 10001: more than 1000 primitives in one query"},
		{"port=1" + strings.Repeat("|port=1", 1000), "invalid query at position 7001: more than 1000 primitives in one query"},
	}
	for _, tc := range tests {
		_, err := Parse(tc.in, now)
		if err == nil {
			t.Errorf("Parse(%.40q) succeeded, want error %q", tc.in, tc.want)
			continue
		}
		if !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%.40q) error %v does not wrap ErrSyntax", tc.in, err)
		}
		if err.Error() != tc.want {
			t.Errorf("Parse(%.40q)\n got error %q\nwant error %q", tc.in, err.Error(), tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"host 1.2.3.4 and (port 80 or udp)", "ip=1.1.1.1 port=80|port=443 last=2h", "net 10.0.0.0 mask 255.0.0.0", "after 3h ago",
		"src host 1.2.3.4 and not dst port 80", "!(tcp or !udp)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s, now)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Pos < 1 || se.Pos > len(s)+1 {
				t.Fatalf("Parse(%q): bad error %v", s, err)
			}
			return
		}
		_ = n.String()
	})
}

// The limits allow what they name: 100 nested levels, 1000 primitives.
func TestParseAtLimits(t *testing.T) {
	deep := strings.Repeat("(", MaxDepth) + "tcp" + strings.Repeat(")", MaxDepth)
	wide := strings.Repeat("tcp or ", MaxPrimitives-1) + "tcp"
	legacy := "port=1" + strings.Repeat("|port=1", MaxPrimitives-1)
	for _, q := range []string{deep, wide, legacy} {
		if _, err := Parse(q, now); err != nil {
			t.Errorf("Parse(%.40q...): %v", q, err)
		}
	}
}
