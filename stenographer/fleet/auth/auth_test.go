package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig/testcerts"
)

// clock is an injectable time source the tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a real TLS server with the login, logout and a protected
// handler that reports the request's user and CSRF token.
type fixture struct {
	t      *testing.T
	auth   *Auth
	clock  *clock
	srv    *httptest.Server
	certs  *testcerts.Set
	pwFile string
}

const (
	alicePW = "correct horse"
	bobPW   = "battery staple"
)

func writePasswords(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	certs, err := testcerts.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, certs: certs, clock: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, pwFile: filepath.Join(dir, "passwords")}
	writePasswords(t, f.pwFile, "# analysts", "", "alice:"+hash(t, alicePW), "bob:"+hash(t, bobPW))
	f.auth, err = New(Config{PasswordFile: f.pwFile, SessionTTL: time.Hour, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.auth.failDelay = 0 // the padding is not under test; it would only slow the tests

	mux := http.NewServeMux()
	mux.Handle(LoginPath, f.auth.LoginHandler())
	mux.Handle(LogoutPath, f.auth.LogoutHandler())
	mux.Handle("/", f.auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user=%s csrf=%s", User(r), CSRFToken(r))
	})))
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.TLS, err = tlsconfig.Server(certs.CA, certs.Server.Cert, certs.Server.Key)
	if err != nil {
		t.Fatal(err)
	}
	// As stenofleet must: browsers come without a certificate.
	f.srv.TLS.ClientAuth = tls.VerifyClientCertIfGiven
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func pool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", caFile)
	}
	return p
}

// client returns a client trusting the test CA, presenting cert if given,
// and not following redirects, so tests see them.
func (f *fixture) client(cert *testcerts.Pair) *http.Client {
	cfg := &tls.Config{RootCAs: pool(f.t, f.certs.CA)}
	if cert != nil {
		c, err := tls.LoadX509KeyPair(cert.Cert, cert.Key)
		if err != nil {
			f.t.Fatal(err)
		}
		// Always present it: Go's client would otherwise withhold a
		// certificate the server's CA list does not name, and the test is
		// that the server refuses it.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	f.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       time.Minute,
	}
}

type request struct {
	method string
	path   string
	cookie *http.Cookie
	header map[string]string
	form   url.Values
}

type response struct {
	status  int
	body    string
	header  http.Header
	cookies []*http.Cookie
}

func (f *fixture) do(c *http.Client, rq request) (response, error) {
	if rq.method == "" {
		rq.method = http.MethodGet
	}
	if rq.path == "" {
		rq.path = "/"
	}
	var body io.Reader
	if rq.form != nil {
		body = strings.NewReader(rq.form.Encode())
	}
	req, err := http.NewRequest(rq.method, f.srv.URL+rq.path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if rq.form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	if rq.cookie != nil {
		req.AddCookie(rq.cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{resp.StatusCode, string(b), resp.Header, resp.Cookies()}, nil
}

func (f *fixture) mustDo(c *http.Client, rq request) response {
	f.t.Helper()
	r, err := f.do(c, rq)
	if err != nil {
		f.t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	return r
}

func (f *fixture) loginForm(user, pw string) request {
	return request{method: http.MethodPost, path: LoginPath, form: url.Values{"user": {user}, "password": {pw}}}
}

// login logs user in and returns the session cookie and its CSRF token.
func (f *fixture) login(c *http.Client, user, pw string) (*http.Cookie, string) {
	f.t.Helper()
	r := f.mustDo(c, f.loginForm(user, pw))
	if r.status != http.StatusSeeOther || len(r.cookies) != 1 {
		f.t.Fatalf("login %s: status %d, cookies %v, body %q", user, r.status, r.cookies, r.body)
	}
	page := f.mustDo(c, request{cookie: r.cookies[0]})
	_, token, ok := strings.Cut(page.body, "csrf=")
	if page.status != http.StatusOK || page.body != "user="+user+" csrf="+token || !ok || token == "" {
		f.t.Fatalf("after login %s: status %d body %q", user, page.status, page.body)
	}
	return r.cookies[0], token
}

// loggedIn returns a fixture, a client and alice's session cookie and token.
func loggedIn(t *testing.T) (*fixture, *http.Client, *http.Cookie, string) {
	f := newFixture(t)
	c := f.client(nil)
	ck, token := f.login(c, "alice", alicePW)
	return f, c, ck, token
}

func TestUnauthenticatedRefused(t *testing.T) {
	f := newFixture(t)
	c := f.client(nil)
	for _, tc := range []struct {
		name     string
		rq       request
		status   int
		location string
	}{
		{"API GET", request{path: "/api/v1/jobs"}, http.StatusUnauthorized, ""},
		{"browser GET", request{path: "/jobs", header: map[string]string{"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}}, http.StatusSeeOther, LoginPath},
		{"browser POST", request{method: http.MethodPost, header: map[string]string{"Accept": "text/html"}, form: url.Values{"q": {"host 1.2.3.4"}}}, http.StatusUnauthorized, ""},
		{"DELETE", request{method: http.MethodDelete, path: "/api/v1/jobs/x"}, http.StatusUnauthorized, ""},
		{"forged cookie", request{cookie: &http.Cookie{Name: cookieName, Value: newSessionID()}}, http.StatusUnauthorized, ""},
		{"empty cookie", request{cookie: &http.Cookie{Name: cookieName, Value: ""}}, http.StatusUnauthorized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.mustDo(c, tc.rq)
			if r.status != tc.status || r.header.Get("Location") != tc.location {
				t.Errorf("status %d Location %q, want %d %q (body %q)", r.status, r.header.Get("Location"), tc.status, tc.location, r.body)
			}
			if strings.Contains(r.body, "user=") {
				t.Errorf("protected handler ran: %q", r.body)
			}
		})
	}
}

func TestClientCertificates(t *testing.T) {
	f := newFixture(t)
	good := f.client(&f.certs.Client)
	r := f.mustDo(good, request{})
	if r.status != http.StatusOK || r.body != "user=steno client csrf=" {
		t.Errorf("good certificate: status %d body %q", r.status, r.body)
	}
	// A certificate stands on its own: no session, so no CSRF token asked.
	if r := f.mustDo(good, request{method: http.MethodPost, form: url.Values{"q": {"port 53"}}}); r.status != http.StatusOK {
		t.Errorf("certificate POST: status %d body %q", r.status, r.body)
	}
	// But a browser sends its certificate cross-site too.
	r = f.mustDo(good, request{method: http.MethodPost, header: map[string]string{"Sec-Fetch-Site": "cross-site"}})
	if r.status != http.StatusForbidden {
		t.Errorf("cross-site certificate POST: status %d body %q, want 403", r.status, r.body)
	}

	for _, tc := range []struct {
		name string
		cert testcerts.Pair
	}{
		{"another CA", f.certs.OtherCAClient},
		{"expired", f.certs.ExpiredClient},
		{"server usage only", f.certs.ServerUsageClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := f.do(f.client(&tc.cert), request{})
			if err == nil {
				t.Fatalf("TLS handshake accepted; status %d body %q", r.status, r.body)
			}
			if !strings.Contains(err.Error(), "tls") && !strings.Contains(err.Error(), "certificate") {
				t.Errorf("error %v does not look like a TLS refusal", err)
			}
		})
	}
}

func TestNoTLSRefused(t *testing.T) {
	f := newFixture(t)
	for _, h := range []http.Handler{f.auth.Middleware(http.NotFoundHandler()), f.auth.LoginHandler(), f.auth.LogoutHandler()} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "http://stenofleet/", nil))
		if w.Code != http.StatusForbidden {
			t.Errorf("plain HTTP: status %d, want 403", w.Code)
		}
	}
}

func TestLogin(t *testing.T) {
	f := newFixture(t)
	c := f.client(nil)

	page := f.mustDo(c, request{path: LoginPath})
	// A self-contained form: nothing fetched from elsewhere, posting back here.
	if page.status != http.StatusOK || !strings.Contains(page.body, `name="password"`) || !strings.Contains(page.body, `action="`+LoginPath+`"`) ||
		strings.Contains(page.body, "src=") || strings.Contains(page.body, "href=") || page.header.Get("Content-Security-Policy") == "" {
		t.Errorf("login page: status %d body %q", page.status, page.body)
	}

	r := f.mustDo(c, f.loginForm("alice", alicePW))
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Fatalf("right password: status %d Location %q", r.status, r.header.Get("Location"))
	}
	if len(r.cookies) != 1 {
		t.Fatalf("right password: cookies %v", r.cookies)
	}
	ck := r.cookies[0]
	if ck.Name != cookieName || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Domain != "" || ck.MaxAge != 3600 {
		t.Errorf("cookie %+v: want Secure, HttpOnly, SameSite=Strict, Path=/, host-only, Max-Age=3600", ck)
	}
	if len(ck.Value) < 43 { // 256 bits in base64
		t.Errorf("session id %q is shorter than 256 bits", ck.Value)
	}
	if got := f.mustDo(c, request{cookie: ck}); got.status != http.StatusOK || !strings.HasPrefix(got.body, "user=alice csrf=") {
		t.Errorf("with session: status %d body %q", got.status, got.body)
	}

	for _, tc := range []struct{ name, user, pw string }{
		{"wrong password", "alice", bobPW},
		{"other user's password", "bob", alicePW},
		{"unknown user", "mallory", alicePW},
		{"empty password", "alice", ""},
		{"too long password", "alice", alicePW + strings.Repeat("x", 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.mustDo(c, f.loginForm(tc.user, tc.pw))
			if r.status != http.StatusUnauthorized || len(r.cookies) != 0 {
				t.Errorf("status %d cookies %v, want 401 and none", r.status, r.cookies)
			}
		})
	}
	// Login CSRF: another site posting its own credentials into the browser.
	rq := f.loginForm("bob", bobPW)
	rq.header = map[string]string{"Sec-Fetch-Site": "cross-site"}
	if r := f.mustDo(c, rq); r.status != http.StatusForbidden || len(r.cookies) != 0 {
		t.Errorf("cross-site login: status %d cookies %v, want 403", r.status, r.cookies)
	}
}

func TestCSRF(t *testing.T) {
	f, c, ck, token := loggedIn(t)
	_, bobToken := f.login(c, "bob", bobPW)
	for _, tc := range []struct {
		name   string
		rq     request
		status int
	}{
		{"GET needs none", request{}, http.StatusOK},
		{"POST without", request{method: http.MethodPost}, http.StatusForbidden},
		{"POST wrong header", request{method: http.MethodPost, header: map[string]string{csrfHeader: "x" + token}}, http.StatusForbidden},
		{"POST other session's", request{method: http.MethodPost, header: map[string]string{csrfHeader: bobToken}}, http.StatusForbidden},
		{"POST wrong form", request{method: http.MethodPost, form: url.Values{csrfField: {token[1:]}}}, http.StatusForbidden},
		{"POST right header", request{method: http.MethodPost, header: map[string]string{csrfHeader: token}}, http.StatusOK},
		{"POST right form", request{method: http.MethodPost, form: url.Values{csrfField: {token}, "q": {"port 53"}}}, http.StatusOK},
		{"PUT without", request{method: http.MethodPut}, http.StatusForbidden},
		{"DELETE without", request{method: http.MethodDelete}, http.StatusForbidden},
		{"DELETE right", request{method: http.MethodDelete, header: map[string]string{csrfHeader: token}}, http.StatusOK},
		{"POST right but cross-site", request{method: http.MethodPost, header: map[string]string{csrfHeader: token, "Sec-Fetch-Site": "cross-site"}}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.rq.cookie = ck
			r := f.mustDo(c, tc.rq)
			if r.status != tc.status {
				t.Errorf("status %d body %q, want %d", r.status, r.body, tc.status)
			}
			if ran := strings.HasPrefix(r.body, "user=alice"); ran != (tc.status == http.StatusOK) {
				t.Errorf("handler ran=%v, body %q", ran, r.body)
			}
		})
	}
}

func TestSessionExpires(t *testing.T) {
	f, c, ck, _ := loggedIn(t)
	f.clock.Add(time.Hour - time.Second)
	if r := f.mustDo(c, request{cookie: ck}); r.status != http.StatusOK {
		t.Fatalf("just before expiry: status %d", r.status)
	}
	f.clock.Add(time.Second)
	if r := f.mustDo(c, request{cookie: ck}); r.status != http.StatusUnauthorized {
		t.Errorf("at expiry: status %d body %q, want 401", r.status, r.body)
	}
}

func TestLogout(t *testing.T) {
	f, c, ck, token := loggedIn(t)
	other, _ := f.login(c, "alice", alicePW)

	if r := f.mustDo(c, request{method: http.MethodGet, path: LogoutPath, cookie: ck}); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET logout: status %d, want 405", r.status)
	}
	if r := f.mustDo(c, request{method: http.MethodPost, path: LogoutPath, cookie: ck}); r.status != http.StatusForbidden {
		t.Errorf("logout without CSRF token: status %d, want 403", r.status)
	}
	if r := f.mustDo(c, request{cookie: ck}); r.status != http.StatusOK {
		t.Fatalf("refused logout ended the session: status %d", r.status)
	}
	r := f.mustDo(c, request{method: http.MethodPost, path: LogoutPath, cookie: ck, form: url.Values{csrfField: {token}}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != LoginPath || len(r.cookies) != 1 || r.cookies[0].MaxAge >= 0 {
		t.Errorf("logout: status %d Location %q cookies %v", r.status, r.header.Get("Location"), r.cookies)
	}
	if r := f.mustDo(c, request{cookie: ck}); r.status != http.StatusUnauthorized {
		t.Errorf("after logout: status %d body %q, want 401", r.status, r.body)
	}
	if r := f.mustDo(c, request{cookie: other}); r.status != http.StatusOK {
		t.Errorf("logout ended the user's other session: status %d", r.status)
	}
}

func TestSessionsPerUserBounded(t *testing.T) {
	f := newFixture(t)
	c := f.client(nil)
	var cookies []*http.Cookie
	for i := 0; i <= maxSessionsPerUser; i++ {
		ck, _ := f.login(c, "alice", alicePW)
		cookies = append(cookies, ck)
		f.clock.Add(time.Second) // orders the sessions by age
	}
	bob, _ := f.login(c, "bob", bobPW)
	if r := f.mustDo(c, request{cookie: cookies[0]}); r.status != http.StatusUnauthorized {
		t.Errorf("oldest of %d sessions: status %d, want 401", len(cookies), r.status)
	}
	for _, ck := range append(cookies[1:], bob) {
		if r := f.mustDo(c, request{cookie: ck}); r.status != http.StatusOK {
			t.Errorf("newer session: status %d", r.status)
		}
	}
}

func TestLoginRateLimited(t *testing.T) {
	t.Run("per user", func(t *testing.T) {
		f := newFixture(t)
		c := f.client(nil)
		for i := 0; i < maxUserFailures; i++ {
			if r := f.mustDo(c, f.loginForm("alice", "guess")); r.status != http.StatusUnauthorized {
				t.Fatalf("failure %d: status %d", i, r.status)
			}
		}
		r := f.mustDo(c, f.loginForm("alice", alicePW))
		if r.status != http.StatusTooManyRequests || len(r.cookies) != 0 || r.header.Get("Retry-After") == "" {
			t.Fatalf("right password after %d failures: status %d cookies %v Retry-After %q", maxUserFailures, r.status, r.cookies, r.header.Get("Retry-After"))
		}
		if r := f.mustDo(c, f.loginForm("bob", bobPW)); r.status != http.StatusSeeOther {
			t.Errorf("another user from the same address: status %d", r.status)
		}
		f.clock.Add(failureWindow)
		f.login(c, "alice", alicePW)
	})
	t.Run("per address", func(t *testing.T) {
		f := newFixture(t)
		c := f.client(nil)
		for i := 0; i < maxAddrFailures; i++ {
			if r := f.mustDo(c, f.loginForm(fmt.Sprintf("user%d", i), "guess")); r.status != http.StatusUnauthorized {
				t.Fatalf("failure %d: status %d", i, r.status)
			}
		}
		if r := f.mustDo(c, f.loginForm("bob", bobPW)); r.status != http.StatusTooManyRequests {
			t.Fatalf("right password after %d failures from the address: status %d", maxAddrFailures, r.status)
		}
		f.clock.Add(failureWindow)
		f.login(c, "bob", bobPW)
	})
}

func TestReload(t *testing.T) {
	f := newFixture(t)
	c := f.client(nil)
	alice, _ := f.login(c, "alice", alicePW)
	bob, _ := f.login(c, "bob", bobPW)

	const newPW = "new password"
	writePasswords(t, f.pwFile, "alice:"+hash(t, newPW), "bob:"+hash(t, bobPW))
	if err := f.auth.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := f.mustDo(c, request{cookie: alice}); r.status != http.StatusUnauthorized {
		t.Errorf("session after password change: status %d, want 401", r.status)
	}
	if r := f.mustDo(c, f.loginForm("alice", alicePW)); r.status != http.StatusUnauthorized {
		t.Errorf("old password after reload: status %d", r.status)
	}
	f.login(c, "alice", newPW)
	// bob's line was rewritten with a new salt: a changed hash, so his session ends too.
	if r := f.mustDo(c, request{cookie: bob}); r.status != http.StatusUnauthorized {
		t.Errorf("bob's session after his hash changed: status %d", r.status)
	}

	writePasswords(t, f.pwFile, "alice:plaintext")
	if err := f.auth.Reload(); err == nil {
		t.Fatal("reload of a bad file succeeded")
	}
	f.login(c, "alice", newPW) // the users loaded before stay in force
}

func TestPasswordFile(t *testing.T) {
	good := hash(t, "pw")
	for _, tc := range []struct {
		name  string
		lines []string
		line  int    // 0: file loads
		want  string // in the error
	}{
		{"comments and blanks", []string{"# users", "", "  ", "alice:" + good, "  # indented comment", "bob:" + strings.Replace(good, "$2a$", "$2y$", 1), "carol:" + strings.Replace(good, "$2a$", "$2b$", 1)}, 0, ""},
		{"no colon", []string{"# x", "alice " + good}, 2, `"user:hash"`},
		{"empty user", []string{":" + good}, 1, "bad user name"},
		{"space in user", []string{"al ice:" + good}, 1, "bad user name"},
		{"apr1 md5", []string{"alice:" + good, "bob:$apr1$abcdefgh$0123456789012345678901"}, 2, "not bcrypt"},
		{"sha1", []string{"bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="}, 1, "not bcrypt"},
		{"crypt", []string{"bob:abJnggxhB/yWI"}, 1, "not bcrypt"},
		{"plain text", []string{"bob:secret"}, 1, "not bcrypt"},
		{"truncated bcrypt", []string{"bob:" + good[:30]}, 1, "malformed bcrypt"},
		{"duplicate user", []string{"alice:" + good, "", "alice:" + good}, 3, "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "passwords")
			writePasswords(t, path, tc.lines...)
			a, err := New(Config{PasswordFile: path})
			if tc.line == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if len(a.users) != 3 {
					t.Errorf("loaded %d users, want 3", len(a.users))
				}
				return
			}
			if err == nil {
				t.Fatal("file accepted")
			}
			if !errors.Is(err, ErrBadPasswordFile) || !strings.Contains(err.Error(), path) ||
				!strings.Contains(err.Error(), fmt.Sprintf("line %d:", tc.line)) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want ErrBadPasswordFile naming %s, line %d and %q", err, path, tc.line, tc.want)
			}
		})
	}
}

func TestPasswordFileWritableByOthersRefused(t *testing.T) {
	for _, mode := range []os.FileMode{0o666, 0o620, 0o602} {
		t.Run(mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "passwords")
			writePasswords(t, path, "alice:"+hash(t, "pw"))
			if err := os.Chmod(path, mode); err != nil { // Chmod, unlike WriteFile, ignores the umask
				t.Fatal(err)
			}
			_, err := New(Config{PasswordFile: path})
			if !errors.Is(err, ErrBadPasswordFile) || !strings.Contains(err.Error(), "writable") || !strings.Contains(err.Error(), path) {
				t.Errorf("mode %v: error %v, want a refusal naming the file", mode, err)
			}
		})
	}
	if _, err := New(Config{PasswordFile: filepath.Join(t.TempDir(), "missing")}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: error %v", err)
	}
}

func TestHashPassword(t *testing.T) {
	h, err := HashPassword(alicePW)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "passwords")
	writePasswords(t, path, "alice:"+h)
	a, err := New(Config{PasswordFile: path})
	if err != nil {
		t.Fatalf("HashPassword's output refused: %v", err)
	}
	if bcrypt.CompareHashAndPassword(a.users["alice"], []byte(alicePW)) != nil {
		t.Error("hash does not match its password")
	}
	for _, pw := range []string{"", strings.Repeat("x", 73)} {
		if _, err := HashPassword(pw); err == nil {
			t.Errorf("HashPassword(%d bytes) succeeded", len(pw))
		}
	}
}

func TestLoginRateLimitHoldsUnderParallelGuesses(t *testing.T) {
	f := newFixture(t)
	const guesses = 8 * maxUserFailures
	statuses := make(chan int, guesses)
	var wg sync.WaitGroup
	for i := 0; i < guesses; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := f.client(nil)
			r, err := f.do(c, f.loginForm("alice", fmt.Sprintf("guess %d", i)))
			if err != nil {
				t.Error(err)
				return
			}
			statuses <- r.status
		}()
	}
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	if counts[http.StatusUnauthorized] != maxUserFailures || counts[http.StatusTooManyRequests] != guesses-maxUserFailures {
		t.Errorf("%d parallel guesses: statuses %v, want %d checked and the rest refused", guesses, counts, maxUserFailures)
	}
}

func TestFailedLoginPadded(t *testing.T) {
	f := newFixture(t)
	f.auth.failDelay = 300 * time.Millisecond
	c := f.client(nil)
	for _, user := range []string{"alice", "mallory"} {
		start := time.Now()
		if r := f.mustDo(c, f.loginForm(user, "guess")); r.status != http.StatusUnauthorized {
			t.Fatalf("%s: status %d", user, r.status)
		}
		// Only the lower bound is asserted: a loaded machine may take longer.
		if d := time.Since(start); d < f.auth.failDelay {
			t.Errorf("failed login for %s answered after %v, before the %v padding", user, d, f.auth.failDelay)
		}
	}
}
