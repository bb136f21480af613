// The analysts' side of password access: a cookie-keeping client, login,
// and what a session may and may not reach.

package fleet_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// browser is a client without a certificate, keeping cookies as a browser
// does, that does not follow redirects (the test looks at them).
func (e *fleetEnv) browser(t *testing.T) *http.Client {
	t.Helper()
	pool, err := caPool(filepath.Join(e.dir, "analysts_ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c := e.httpClient(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	c.Jar, err = cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.Timeout = 2 * time.Minute
	return c
}

// send is one request from c; it returns the status and the body.
func send(t *testing.T, c *http.Client, method, path string, body string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+fleetAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// logIn posts the login form and returns the session's CSRF token from
// GET /session.
func (e *fleetEnv) logIn(t *testing.T, c *http.Client, user, password string) string {
	t.Helper()
	form := url.Values{"user": {user}, "password": {password}}.Encode()
	ct := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	if code, b := send(t, c, "POST", "/login", form, ct); code != http.StatusSeeOther {
		t.Fatalf("login %s: status %d, want 303: %s", user, code, testenv.Tail(b, 300))
	}
	code, b := send(t, c, "GET", "/session", "", nil)
	var s struct{ User, CSRF string }
	if err := json.Unmarshal(b, &s); code != http.StatusOK || err != nil || s.User != user || s.CSRF == "" {
		t.Fatalf("GET /session: status %d %s (%v), want user %s and a CSRF token", code, b, err, user)
	}
	return s.CSRF
}

// passwordAccess: the ways a browser is refused, and the way it gets in.
func (e *fleetEnv) passwordAccess(t *testing.T, aliceJob string) {
	c := e.browser(t)
	if code, _ := send(t, c, "GET", "/stats", "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /stats with no certificate and no session: status %d, want 401", code)
	}
	form := url.Values{"user": {"alice"}, "password": {"wrong"}}.Encode()
	if code, _ := send(t, c, "POST", "/login", form, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); code != http.StatusUnauthorized {
		t.Errorf("wrong password: status %d, want 401", code)
	}
	csrf := e.logIn(t, c, "alice", "alice-secret")
	q := "host " + sharedHost
	if code, _ := send(t, c, "POST", "/query?sensors=good", q, nil); code != http.StatusForbidden {
		t.Errorf("POST /query on a session without the CSRF token: status %d, want 403", code)
	}
	code, b := send(t, c, "POST", "/query?sensors=good", q, map[string]string{"X-CSRF-Token": csrf})
	if code != http.StatusOK {
		t.Fatalf("POST /query on a session: status %d: %s", code, testenv.Tail(b, 300))
	}
	e.samePackets(t, "session query", parse(t, b).Packets, e.union(t, q, e.sensors))
	if code, _ := send(t, c, "GET", "/status/"+aliceJob, "", nil); code != http.StatusOK {
		t.Errorf("alice's own job by password: status %d, want 200", code)
	}
	bob := e.browser(t)
	e.logIn(t, bob, "bob", "bob-secret")
	for _, p := range []string{"/status/" + aliceJob, "/" + aliceJob + "/merged.pcap"} {
		if code, _ := send(t, bob, "GET", p, "", nil); code != http.StatusForbidden {
			t.Errorf("bob reads alice's job at %s: status %d, want 403", p, code)
		}
	}
	if code, _ := send(t, c, "POST", "/logout", "", map[string]string{"X-CSRF-Token": csrf}); code >= 400 {
		t.Errorf("logout: status %d", code)
	}
	if code, _ := send(t, c, "GET", "/stats", "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /stats after logout: status %d, want 401", code)
	}
}
