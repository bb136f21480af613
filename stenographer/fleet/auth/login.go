package auth

import (
	_ "embed"
	"html/template"
	"net"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/crypto/bcrypt"
)

//go:embed login.html
var loginHTML string

var loginPage = template.Must(template.New("login").Parse(loginHTML))

// maxLoginBody bounds a login form; user and password need far less.
const maxLoginBody = 4 << 10

// LoginHandler serves the login form on GET and checks it on POST.
func (a *Auth) LoginHandler() http.Handler {
	return a.guard(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			renderLogin(w, http.StatusOK, "")
		case http.MethodPost:
			a.login(w, r)
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
}

func renderLogin(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// A failed write means the client left.
	loginPage.Execute(w, struct{ Action, Error string }{LoginPath, msg})
}

func (a *Auth) login(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad login form", http.StatusBadRequest)
		return
	}
	user, pw := r.PostFormValue("user"), r.PostFormValue("password")
	addr := clientAddr(r)
	now := a.cfg.Now()

	key := limiterKey(user)

	// The attempt is charged before the hash is checked and refunded on
	// success, so parallel guesses cannot all pass the check before any of
	// them counts.
	a.mu.Lock()
	uBlocked, uUntil := a.byUser.blocked(key, now)
	aBlocked, aUntil := a.byAddr.blocked(addr, now)
	if !uBlocked && !aBlocked {
		a.byUser.fail(key, now)
		a.byAddr.fail(addr, now)
	}
	hash, known := a.users[user]
	if !known {
		hash = a.dummy
	}
	a.mu.Unlock()
	if uBlocked || aBlocked {
		until := uUntil
		if aUntil.After(until) {
			until = aUntil
		}
		a.cfg.Logger.Warn("auth: login refused, too many failures", "user", key, "addr", addr, "until", until)
		w.Header().Set("Retry-After", strconv.Itoa(int(until.Sub(now).Seconds())+1))
		http.Error(w, "too many failed logins; try again later", http.StatusTooManyRequests)
		return
	}

	// The hash is checked even for unknown users so both fail equally slowly.
	ok := bcrypt.CompareHashAndPassword(hash, []byte(pw)) == nil && known
	if !ok {
		a.cfg.Logger.Warn("auth: login failed", "user", key, "addr", addr, "known_user", known)
		a.waitUntil(r, start.Add(a.failDelay))
		renderLogin(w, http.StatusUnauthorized, "Wrong user name or password.")
		return
	}

	s := &session{id: newSessionID(), user: user, hash: string(hash), expires: now.Add(a.cfg.SessionTTL)}
	a.mu.Lock()
	a.byUser.clear(key)
	a.byAddr.refund(addr)
	a.addSession(s, now)
	a.mu.Unlock()
	a.cfg.Logger.Info("auth: login", "user", user, "addr", addr)
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    s.id,
		Path:     "/",
		Expires:  s.expires,
		MaxAge:   int(a.cfg.SessionTTL.Seconds()),
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// limiterKey bounds what a failed login may make the limiter hold.
func limiterKey(user string) string {
	const max = 256
	if len(user) > max {
		return user[:max]
	}
	return user
}

// waitUntil pads a failed login to a fixed duration, so its timing does not
// tell which check failed, unless the client goes away first.
func (a *Auth) waitUntil(r *http.Request, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-r.Context().Done():
	}
}

// clientAddr is the peer's IP. Forwarding headers are not trusted:
// stenofleet terminates TLS itself, so the peer is the client.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// LogoutHandler ends the request's session (POST, with its CSRF token) and
// sends the browser to the login page.
func (a *Auth) LogoutHandler() http.Handler {
	return a.guard(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if s := a.session(r); s != nil {
			if !validCSRF(r, csrfToken(a.csrfKey, s.id)) {
				http.Error(w, "missing or wrong CSRF token", http.StatusForbidden)
				return
			}
			a.mu.Lock()
			delete(a.sessions, sessionKey(s.id))
			a.mu.Unlock()
			a.cfg.Logger.Info("auth: logout", "user", s.user, "addr", clientAddr(r))
		}
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, LoginPath, http.StatusSeeOther)
	})
}
