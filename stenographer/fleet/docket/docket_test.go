package docket

import (
	"net/url"
	"strings"
	"testing"
)

func TestFromPath(t *testing.T) {
	for _, c := range []struct{ path, want string }{
		{"/pcap/host/1.2.3.4/port/80/udp/after/3m/", "host 1.2.3.4 and port 80 and udp and after 3m ago"},
		{"/host/1.2.3.4/", "host 1.2.3.4"},
		{"/host/1.2.3.4/host/5.6.7.8/", "host 1.2.3.4 and host 5.6.7.8"},
		{"/host/1.2.3.4/5.6.7.8/", "host 1.2.3.4 and host 5.6.7.8"},
		{"/net/1.2.3.0/24/", "net 1.2.3.0/24"},
		{"/net/1.2.3.0/24/5.6.0.0/16/", "net 1.2.3.0/24 and net 5.6.0.0/16"},
		{"/port/80/", "port 80"},
		{"/port/80/443/", "port 80 and port 443"},
		{"/proto/6/", "ip proto 6"},
		{"/tcp/", "tcp"},
		{"/udp/", "udp"},
		{"/icmp/", "icmp"},
		{"/before/2017-04-30/", "before 2017-04-30T00:00:00Z"},
		{"/before/2017-04-30T13:26:43Z/", "before 2017-04-30T13:26:43Z"},
		{"/before/45m/", "before 45m ago"},
		{"/after/3h/", "after 180m ago"},
		{"/after/3h30m/", "after 210m ago"},
		{"/after/3.5h/", "after 210m ago"},
	} {
		q, err := FromPath(c.path)
		if err != nil {
			t.Errorf("FromPath(%q): %v", c.path, err)
			continue
		}
		if q.Text != c.want {
			t.Errorf("FromPath(%q) = %q, want %q", c.path, q.Text, c.want)
		}
		if strings.Join(q.Clauses, " and ") != q.Text {
			t.Errorf("FromPath(%q): clauses %q do not make the text", c.path, q.Clauses)
		}
	}
}

func TestFromPathErrors(t *testing.T) {
	for _, p := range []string{"/", "/host/", "/host/x/", "/net/1.2.3.4/99/", "/port/70000/",
		"/proto/300/", "/bogus/", "/after/3x/", "/after/1.5m/", "/before/"} {
		if q, err := FromPath(p); err == nil {
			t.Errorf("FromPath(%q) = %q, want an error", p, q.Text)
		}
	}
}

func TestFromFormAndJSON(t *testing.T) {
	form := url.Values{"host": {"1.2.3.4"}, "net": {"10.0.0.0/8"}, "port": {"80"}, "proto": {"17"},
		"proto-name": {"tcp"}, "before": {"2017-04-30"}, "after": {"2017-04-29T10:00:00Z"},
		"before-ago": {"45m"}, "after-ago": {"3h30"}}
	want := "host 1.2.3.4 and net 10.0.0.0/8 and port 80 and ip proto 17 and tcp and before 2017-04-30T00:00:00Z and after 2017-04-29T10:00:00Z and before 45m ago and after 210m ago"
	q, err := FromForm(form)
	if err != nil || q.Text != want {
		t.Fatalf("FromForm = %q, %v; want %q", q.Text, err, want)
	}
	js := `{"host":"1.2.3.4","net":"10.0.0.0/8","port":80,"proto":17,"proto-name":"tcp","before":"2017-04-30",
		"after":"2017-04-29T10:00:00Z","before-ago":"45m","after-ago":"3h30"}`
	q, err = FromJSON(strings.NewReader(js))
	if err != nil || q.Text != want {
		t.Fatalf("FromJSON = %q, %v; want %q", q.Text, err, want)
	}
	q, err = FromJSON(strings.NewReader(`{"host":["1.2.3.4","5.6.7.8"]}`))
	if err != nil || q.Text != "host 1.2.3.4 and host 5.6.7.8" {
		t.Fatalf("FromJSON two hosts = %q, %v", q.Text, err)
	}
	for _, bad := range []url.Values{{"hots": {"1.2.3.4"}}, {"proto": {"6", "17"}}, {"host": {"a", "b", "c"}}, {}} {
		if _, err := FromForm(bad); err == nil {
			t.Errorf("FromForm(%v): want an error", bad)
		}
	}
	a, _ := FromPath("/port/80/host/1.2.3.4/")
	b, _ := FromPath("/host/1.2.3.4/port/80/")
	if strings.Join(a.Sorted(), ",") != strings.Join(b.Sorted(), ",") {
		t.Errorf("sorted clauses differ: %q vs %q", a.Sorted(), b.Sorted())
	}
}
