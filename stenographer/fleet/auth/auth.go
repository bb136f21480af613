// Package auth authenticates analysts at stenofleet.
//
// Two ways in, both over TLS only:
//
//   - a client certificate verified by the TLS layer against the fleet CA
//     (the same scheme as the sensors; stenokeys.sh makes one). The user is
//     the leaf certificate's CommonName. This is for API clients.
//   - for browsers, a user name and password from a password file, which
//     starts a server-side session held in a cookie. Unsafe requests
//     (POST, PUT, DELETE, PATCH) on a session must echo the session's CSRF
//     token in the X-CSRF-Token header or the csrf_token form field.
//
// The password file has one "user:hash" line per user, the hash bcrypt
// ($2a$, $2b$ or $2y$); '#' starts a comment line and blank lines are
// ignored. It is what Apache's `htpasswd -B -n user` prints (Debian package
// apache2-utils), or HashPassword. Auth refuses a group- or world-writable
// file. Reload re-reads it; sessions of users removed or whose hash changed
// end then.
//
// Sessions live in memory only (a restart logs everyone out), end
// SessionTTL after login, and number at most 16 per user. A user may fail
// to log in 5 times and an address 20 times in 15 minutes; further tries
// get 429 until the window ends. A failed login is answered after a fixed
// delay (1s), whether the user exists or not.
//
// Serve with tls.Config.ClientAuth = tls.VerifyClientCertIfGiven (browsers
// come without a certificate; a certificate that does not verify still
// fails the handshake). Mount LoginHandler at LoginPath and LogoutHandler
// at LogoutPath outside Middleware, and everything else inside it.
// Handlers behind Middleware put CSRFToken(r) into their pages' forms.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Paths Middleware redirects browsers to and the login page posts to.
const (
	LoginPath  = "/login"
	LogoutPath = "/logout"
)

// DefaultSessionTTL is a working day: a session ends this long after login
// however active it was.
const DefaultSessionTTL = 8 * time.Hour

// cookieName has the __Host- prefix so browsers accept the cookie only when
// Secure, host-only and Path=/, which keeps a sibling subdomain from
// planting a session.
const cookieName = "__Host-stenofleet-session"

// csrfHeader and csrfField carry the CSRF token on unsafe requests.
const (
	csrfHeader = "X-CSRF-Token"
	csrfField  = "csrf_token"
)

// Config configures New. Only PasswordFile is required.
type Config struct {
	PasswordFile string
	SessionTTL   time.Duration    // 0: DefaultSessionTTL
	Now          func() time.Time // nil: time.Now; tests inject a clock
	Logger       *slog.Logger     // nil: discard
}

// Auth holds the users, the sessions and the login failure counts. It is
// safe for concurrent use.
type Auth struct {
	cfg       Config
	csrfKey   []byte
	failDelay time.Duration // how long a failed login takes, whatever failed
	origin    *http.CrossOriginProtection

	mu       sync.Mutex
	users    map[string][]byte
	dummy    []byte // hash checked for unknown users, so they take as long as known ones
	sessions map[[32]byte]*session
	byUser   *limiter
	byAddr   *limiter
}

// New loads cfg.PasswordFile and returns an Auth with no sessions.
func New(cfg Config) (*Auth, error) {
	if cfg.PasswordFile == "" {
		return nil, fmt.Errorf("auth: no password file configured")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Auth{
		cfg:       cfg,
		csrfKey:   make([]byte, 32),
		failDelay: time.Second,
		origin:    http.NewCrossOriginProtection(),
		sessions:  make(map[[32]byte]*session),
		byUser:    newLimiter(maxUserFailures),
		byAddr:    newLimiter(maxAddrFailures),
	}
	rand.Read(a.csrfKey)
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload re-reads the password file. On error the users loaded before stay
// in force.
func (a *Auth) Reload() error {
	users, err := loadPasswords(a.cfg.PasswordFile)
	if err != nil {
		return err
	}
	dummy, err := dummyHash(users)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.users, a.dummy = users, dummy
	for k, s := range a.sessions {
		if h, ok := users[s.user]; !ok || string(h) != s.hash {
			delete(a.sessions, k)
		}
	}
	a.cfg.Logger.Info("auth: password file loaded", "file", a.cfg.PasswordFile, "users", len(users))
	return nil
}

// dummyHash returns a hash of a random password at the highest cost in
// users, so a login for an unknown user costs what a known one does.
func dummyHash(users map[string][]byte) ([]byte, error) {
	cost := bcrypt.MinCost
	for _, h := range users {
		if c, err := bcrypt.Cost(h); err == nil && c > cost {
			cost = c
		}
	}
	h, err := bcrypt.GenerateFromPassword([]byte(newSessionID()[:40]), cost)
	if err != nil {
		return nil, fmt.Errorf("auth: dummy hash: %w", err)
	}
	return h, nil
}

type ctxKey struct{}

type identity struct {
	user string
	csrf string // empty for certificate users, who have no session
}

// User returns the user Middleware authenticated, or "" outside it.
func User(r *http.Request) string {
	id, _ := r.Context().Value(ctxKey{}).(identity)
	return id.user
}

// CSRFToken returns the token a page served to r must echo back on unsafe
// requests. It is "" for certificate users, who need none.
func CSRFToken(r *http.Request) string {
	id, _ := r.Context().Value(ctxKey{}).(identity)
	return id.csrf
}

// Middleware passes on only authenticated requests, with the user in their
// context (see User).
func (a *Auth) Middleware(next http.Handler) http.Handler {
	return a.guard(func(w http.ResponseWriter, r *http.Request) {
		if user, ok := certUser(r); ok {
			next.ServeHTTP(w, withIdentity(r, identity{user: user}))
			return
		}
		s := a.session(r)
		if s == nil {
			a.unauthenticated(w, r)
			return
		}
		token := csrfToken(a.csrfKey, s.id)
		if unsafeMethod(r.Method) && !validCSRF(r, token) {
			a.cfg.Logger.Warn("auth: missing or wrong CSRF token", "user", s.user, "method", r.Method, "path", r.URL.Path, "addr", r.RemoteAddr)
			http.Error(w, "missing or wrong CSRF token", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, withIdentity(r, identity{user: s.user, csrf: token}))
	})
}

// guard refuses what no handler here serves: plain HTTP, and unsafe
// requests a browser marks (Sec-Fetch-Site, Origin) as cross-origin. The
// latter matters most for certificates, which a browser presents to
// cross-site requests too and which have no CSRF token; for sessions and
// the login form (an attacker logging the browser in as himself) it backs
// up SameSite=Strict and the token.
func (a *Auth) guard(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			http.Error(w, "stenofleet is served over TLS only", http.StatusForbidden)
			return
		}
		if err := a.origin.Check(r); err != nil {
			a.cfg.Logger.Warn("auth: cross-origin request refused", "method", r.Method, "path", r.URL.Path, "addr", r.RemoteAddr)
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
		h(w, r)
	})
}

func withIdentity(r *http.Request, id identity) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), ctxKey{}, id))
}

// certUser returns the CommonName of a client certificate the TLS layer
// verified. A certificate without one names nobody and is not accepted.
func certUser(r *http.Request) (string, bool) {
	if len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", false
	}
	cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
	return cn, cn != ""
}

// session returns a copy of r's live session, or nil.
func (a *Auth) session(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.lookup(c.Value, a.cfg.Now())
	if s == nil {
		return nil
	}
	cp := *s
	return &cp
}

func (a *Auth) unauthenticated(w http.ResponseWriter, r *http.Request) {
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.Header.Get("Accept"), "text/html") {
		http.Redirect(w, r, LoginPath, http.StatusSeeOther)
		return
	}
	http.Error(w, "authentication required: a client certificate or a session", http.StatusUnauthorized)
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

// validCSRF looks in the header first so API-style requests need not have
// their bodies parsed.
func validCSRF(r *http.Request, want string) bool {
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
