package fleet_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
)

// chromiumPath finds Debian's chromium; without it the page test is
// skipped, unless the run requires it (make test: make deps installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, n := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := "chromium not found in PATH (apt-get install chromium, or make deps): the web page is not tested"
	if os.Getenv("STENO_REQUIRE_SHARED") == "1" || os.Getenv("STENO_REQUIRE_CHROMIUM") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// artifactDir is where screenshots go: $STENO_ARTIFACTS (make test sets
// build/test-artifacts), else the test's temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("STENO_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// connectProxy lets chromium, running in the test's namespace, reach
// stenofleet in the fleet namespace: an HTTP CONNECT proxy on loopback
// that dials only stenofleet's address, from inside the namespace.
func (e *fleetEnv) connectProxy(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ns := "/var/run/netns/" + e.ns
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				if req.Method != http.MethodConnect || req.Host != fleetAddr {
					io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				up, err := daemon.DialInNS(ctx, ns, "tcp", fleetAddr)
				cancel()
				if err != nil {
					io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
					return
				}
				defer up.Close()
				io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				go func() { io.Copy(up, br); up.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String()
}

// webPage drives the page in headless chromium: log in with a password,
// preview and download a query (the bytes must be the API's), a
// click-to-PCAP link, a refused query's reason, the sensor page.
func (e *fleetEnv) webPage(t *testing.T) {
	exe := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // the tests run as root
		chromedp.Headless,
		// The server certificate is the test's own CA's, which chromium
		// does not know; nothing but stenofleet is reached (the proxy
		// refuses any other address).
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.ProxyServer("http://"+e.connectProxy(t)),
		// Without this chromium sends loopback addresses around the proxy.
		chromedp.Flag("proxy-bypass-list", "<-loopback>"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	// The browser starts with the first Do, on a context without a
	// deadline (a deadline there would stop the browser); the steps get one.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	base := "https://" + fleetAddr
	fail := func(what string, err error) {
		t.Helper()
		loc, _ := chromedp.Run(bctx, chromedp.Location())
		t.Fatalf("%s (at %s): %v", what, loc, err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			fail(what, err)
		}
	}
	eval := func(what, js string) []string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](js))
		if err != nil {
			fail(what, err)
		}
		return v
	}
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	dir := artifactDir(t)
	screenshot := func(name string) {
		t.Helper()
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			fail("screenshot", err)
		}
		f := filepath.Join(dir, "stenofleet-"+name+".png")
		if err := os.WriteFile(f, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", f)
	}

	do("log in",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(css("#password")),
		chromedp.SendKeys(css("#user"), "alice"),
		chromedp.SendKeys(css("#password"), "alice-secret"),
		chromedp.Submit(css("#password")),
		chromedp.WaitVisible(css(`body[data-ready="1"]`)))

	q := "host " + sharedHost
	do("preview",
		chromedp.SetValue(css("#q"), q),
		chromedp.Click(css("#preview-btn")),
		chromedp.WaitVisible(css("#preview tbody tr.packet")))
	rows := eval("preview rows", `[...document.querySelectorAll("#preview tbody tr.packet")].map(r => r.textContent)`)
	if len(rows) != 50 {
		t.Errorf("preview of %q: %d rows, want 50", q, len(rows))
	} else if !strings.Contains(rows[0], sharedHost) || !strings.Contains(rows[0], "sensor-") {
		t.Errorf("first preview row %q: want the address and the sensor", rows[0])
	}

	do("download",
		chromedp.Click(css("#download-btn")),
		chromedp.WaitReady(css(`body[data-download-sha256]`)))
	sum := eval("download digest", `[document.body.dataset.downloadSha256]`)
	// Every sensor, as the page with all ticked: sensor-badcert is missing.
	api := e.expect(t, e.do(t, "POST", "/query", "", "("+q+")", nil), "POST /query with the bad sensor", http.StatusOK)
	if want := sha256.Sum256(api.body); sum[0] != hex.EncodeToString(want[:]) {
		t.Errorf("the page's download has SHA-256 %s, the API's %d bytes %x", sum[0], len(api.body), want)
	}

	do("refused query",
		chromedp.SetValue(css("#q"), "host 1.2.3.4 and ("),
		chromedp.Click(css("#preview-btn")),
		chromedp.WaitVisible(css("#error")))
	if errText := eval("error text", `[document.querySelector("#error").textContent]`); !strings.Contains(errText[0], "refused") {
		t.Errorf("a bad query shows %q, want the sensors' reason", errText[0])
	}

	do("a job",
		chromedp.SetValue(css("#q"), "udp"),
		chromedp.Click(css("#job-btn")),
		chromedp.WaitVisible(css(`#jobs tbody tr.job a[href$="/merged.pcap"]`)))
	// The page refreshes the list until the job completes.
	var jobs []string
	for deadline := time.Now().Add(60 * time.Second); ; {
		jobs = eval("job rows", `[...document.querySelectorAll("#jobs tbody tr.job")].filter(r => r.cells[1].textContent.startsWith("((udp)) and after ")).map(r => r.cells[2].textContent + " " + r.cells[4].textContent)`)
		if len(jobs) == 1 && jobs[0] == "Completed (partial) merged.pcap" || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(jobs) != 1 || jobs[0] != "Completed (partial) merged.pcap" {
		t.Errorf("the page's job for udp: rows %q, want one completed (partial: sensor-badcert) with its link", jobs)
	}

	screenshot("query")

	do("click-to-PCAP",
		chromedp.Navigate(base+"/?q=udp&sensors=sensor-1&run=1"),
		chromedp.WaitVisible(css("#preview tbody tr.packet")))
	protos := eval("click-to-PCAP rows", `[...document.querySelectorAll("#preview tbody tr.packet")].map(r => r.cells[1].textContent + " " + r.cells[4].textContent)`)
	if len(protos) != perSensor/2 {
		t.Errorf("click-to-PCAP udp on sensor-1: %d rows, want %d", len(protos), perSensor/2)
	}
	for _, p := range protos {
		if p != "sensor-1 udp" {
			t.Errorf("click-to-PCAP udp on sensor-1: row %q", p)
			break
		}
	}

	do("sensor page",
		chromedp.Navigate(base+"/#sensors"),
		chromedp.WaitVisible(css("#sensors tbody tr.sensor")))
	sensors := eval("sensor rows", `[...document.querySelectorAll("#sensors tbody tr.sensor")].map(r => r.cells[0].textContent + " " + r.cells[1].textContent.split(":")[0])`)
	for _, want := range []string{"sensor-0 up", "sensor-1 up", "sensor-2 up", "sensor-badcert down"} {
		if !slices.Contains(sensors, want) {
			t.Errorf("sensor page %q lacks %q", sensors, want)
		}
	}
	// A chart per sensor, with both lines once stenofleet has two up
	// samples of it (HEALTH_INTERVAL is 1s; the page refreshes itself).
	charted := `[...document.querySelectorAll("#charts figure.sensor-chart")].filter((f) =>
		f.querySelector("svg polyline.packets[points]") && f.querySelector("svg polyline.drops[points]")).map((f) => f.dataset.sensor)`
	var got []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		got = eval("charts", charted)
		if len(got) == 3 || time.Now().After(deadline) {
			break
		}
	}
	if !slices.Equal(got, []string{"sensor-0", "sensor-1", "sensor-2"}) {
		t.Errorf("sensor page charts with packet and drop lines: %q, want one per good sensor", got)
	}
	health := eval("health cells", `[...document.querySelectorAll("#sensors tbody tr.sensor")].filter((r) => r.cells[1].textContent === "up").map((r) => [...r.cells].map((c) => c.textContent).join("|"))`)
	for _, row := range health {
		cells := strings.Split(row, "|")
		if len(cells) != 8 || cells[3] == "" || !strings.HasSuffix(cells[4], "/s") || !strings.HasSuffix(cells[5], "/s") ||
			!strings.HasSuffix(cells[6], "B") || !strings.HasSuffix(cells[7], "B") {
			t.Errorf("sensor page row %q: want oldest packet, retention, packets/s, drops/s, disk used and free", row)
		}
	}
	screenshot("sensors")
}
