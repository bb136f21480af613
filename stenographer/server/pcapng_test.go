package server_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/google/gopacket/pcapgo"

	"github.com/stenographer-ng/stenographer/stenographer/server"
)

// Accept decides the result's format: pcapng (and its Content-Type) only
// when the client names application/x-pcapng without q=0; PCAP for
// everything else.
func TestWantsPcapng(t *testing.T) {
	for _, tc := range []struct {
		accept []string
		want   bool
	}{
		{nil, false},
		{[]string{"*/*"}, false},
		{[]string{"application/octet-stream"}, false},
		{[]string{"application/x-pcapng"}, true},
		{[]string{"Application/X-PCAPNG; q=0.5"}, true},
		{[]string{"application/vnd.tcpdump.pcap, application/x-pcapng;q=0.9"}, true},
		{[]string{"text/plain", "application/x-pcapng"}, true},
		{[]string{"application/x-pcapng;q=0"}, false},
		{[]string{"application/x-pcapng; q=0.0"}, false},
		{[]string{"application/x-pcapngx"}, false},
	} {
		h := http.Header{}
		for _, v := range tc.accept {
			h.Add("Accept", v)
		}
		if got := server.WantsPcapng(h); got != tc.want {
			t.Errorf("Accept %q: pcapng %v, want %v", tc.accept, got, tc.want)
		}
	}
}

// Over HTTPS a pcapng result holds the same packets as the PCAP one.
func TestQueryPcapng(t *testing.T) {
	e := start(t, small)
	read := func(accept string) (string, []byte) {
		resp := e.post(t, "port 1003", map[string]string{"Accept": accept})
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("Accept %q: status %d, %v", accept, resp.StatusCode, err)
		}
		return resp.Header.Get("Content-Type"), body
	}
	ct, ng := read(server.ContentTypePcapng)
	if ct != server.ContentTypePcapng {
		t.Errorf("Content-Type %q", ct)
	}
	ct, classic := read("")
	if ct != "application/octet-stream" {
		t.Errorf("Content-Type of PCAP %q", ct)
	}
	nr, err := pcapgo.NewNgReader(bytes.NewReader(ng), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := pcapgo.NewReader(bytes.NewReader(classic))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; ; n++ {
		a, _, errA := nr.ReadPacketData()
		b, _, errB := cr.ReadPacketData()
		if errA != nil || errB != nil {
			if (errA == nil) != (errB == nil) {
				t.Fatalf("packet %d: pcapng %v, PCAP %v", n, errA, errB)
			}
			break
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("packet %d differs", n)
		}
	}
	if n != 200 {
		t.Errorf("%d packets, want 200", n)
	}
}
