package server_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/query"
	"github.com/stenographer-ng/stenographer/stenographer/server"
	"github.com/stenographer-ng/stenographer/stenographer/server/servertest"
)

// TestExplain: POST /explain tells what a query would touch, as the store
// computes it, without running it; a bad query is a 400 naming the problem.
func TestExplain(t *testing.T) {
	t.Parallel()
	e := start(t, small)
	for _, tc := range []struct {
		query                 string
		candidates, scanFiles int
		timeChecked           bool
	}{
		{"port 1003", 200, 0, false},
		{"port 1003 or port 1006", 400, 0, false},
		{"after 3h ago", 0, 20, false},
		{"port 1004 and before 2h ago", -1, 0, true},
		{"port 2000", 0, 0, false},
	} {
		t.Run(tc.query, func(t *testing.T) {
			resp := e.postTo(t, "/explain", tc.query)
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			got := map[string]string{}
			sc := bufio.NewScanner(strings.NewReader(string(body)))
			for sc.Scan() {
				k, v, _ := strings.Cut(sc.Text(), ": ")
				got[k] = v
			}
			q, err := query.Parse(tc.query, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			c, err := e.st.Cost(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			if tc.candidates >= 0 && c.Candidates != int64(tc.candidates) {
				t.Errorf("the store counts %d candidates, want %d", c.Candidates, tc.candidates)
			}
			cand := strconv.FormatInt(c.Candidates, 10)
			if tc.timeChecked {
				cand += " (before a per-packet check: time, src/dst or not)"
			}
			for k, want := range map[string]string{
				"files": "20", "indexes read": strconv.Itoa(c.FilesOpened), "index bytes read": strconv.FormatInt(c.IndexBytes, 10),
				"candidate packets": cand, "unreadable files": "0",
			} {
				if got[k] != want {
					t.Errorf("%s: %q, want %q\n%s", k, got[k], want, body)
				}
			}
			if !strings.HasPrefix(got["files read whole (no indexed term)"], strconv.Itoa(tc.scanFiles)+" (") {
				t.Errorf("files read whole: %q, want %d", got["files read whole (no indexed term)"], tc.scanFiles)
			}
			if tc.scanFiles == 0 && c.FilesOpened > 0 && c.IndexBytes == 0 {
				t.Errorf("no index bytes read for %d indexes", c.FilesOpened)
			}
		})
	}
	resp := e.postTo(t, "/explain", "port")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "port") {
		t.Errorf("a bad query: status %d %q, want 400 naming the problem", resp.StatusCode, body)
	}
}

// TestFilterHeader: Steno-Filter refines the result on the server (here
// on the first byte of the frames, which holds the packet number); one
// that libpcap refuses is a 400 with its message.
func TestFilterHeader(t *testing.T) {
	t.Parallel()
	e := start(t, small)
	resp := e.post(t, "after 3h ago", map[string]string{server.HeaderFilter: "ether[0] = 7"})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	pkts := servertest.Packets(t, body)
	if len(pkts) != 8 { // 7, 263, ..., 1799 of 2000
		t.Errorf("%d packets, want the 8 whose number is 7 mod 256", len(pkts))
	}
	for _, k := range pkts {
		if k%256 != 7 {
			t.Errorf("packet %d passed the filter", k)
		}
	}
	if tr := resp.Trailer.Get(server.TrailerPackets); tr != strconv.Itoa(len(pkts)) {
		t.Errorf("trailer %s = %q, want the %d packets sent", server.TrailerPackets, tr, len(pkts))
	}
	resp = e.post(t, "after 3h ago", map[string]string{server.HeaderFilter: "port"})
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "syntax error") {
		t.Errorf("a filter libpcap refuses: status %d %q, want 400 with libpcap's message", resp.StatusCode, body)
	}
}

// TestNegation: `not` over HTTPS is exact with and without an indexed
// term; one without is read whole, which /explain says, and is refused
// with a 400 naming the limit once its time range holds more packet data
// than --max_scan_bytes.
func TestNegation(t *testing.T) {
	t.Parallel()
	limited := small
	limited.MaxScanBytes = 1000
	for _, tc := range []struct {
		layout    servertest.Layout
		query     string
		packets   int // -1: refused
		unbounded bool
	}{
		{small, "not port 1003", 1800, true},
		{small, "!port 1003 and !port 1004 and after 3h ago", 1600, true},
		{limited, "port 1003 or port 1004 and not port 1004", 200, false},
		{limited, "not port 1003", -1, true},
		{limited, "after 3h ago", 2000, false}, // time bounds alone are not limited
	} {
		e := start(t, tc.layout)
		resp := e.post(t, tc.query, nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if tc.packets < 0 {
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "--max_scan_bytes") ||
				!strings.Contains(string(body), "1000 bytes") {
				t.Errorf("%q: status %d %q, want 400 naming the limit", tc.query, resp.StatusCode, body)
			}
		} else if resp.StatusCode != http.StatusOK {
			t.Errorf("%q: status %d %q", tc.query, resp.StatusCode, body)
		} else if n := len(servertest.Packets(t, body)); n != tc.packets {
			t.Errorf("%q: %d packets, want %d", tc.query, n, tc.packets)
		}
		resp = e.postTo(t, "/explain", tc.query)
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		unbounded := strings.Contains(string(body), "negation bounded by no indexed term")
		refused := strings.Contains(string(body), "refused: ")
		if resp.StatusCode != http.StatusOK || unbounded != tc.unbounded || refused != (tc.packets < 0) {
			t.Errorf("/explain %q: status %d, says unbounded %v, refused %v:\n%s", tc.query, resp.StatusCode, unbounded, refused, body)
		}
	}
}
