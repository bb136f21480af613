package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"time"
)

// session is one browser login. Sessions live only in memory: a restart
// logs everyone out, which is the safe direction.
type session struct {
	id      string // the cookie value
	user    string
	hash    string // the user's password hash at login; a changed hash ends the session on Reload
	expires time.Time
}

// newSessionID returns 256 random bits, base64url-encoded for the cookie.
func newSessionID() string {
	var b [32]byte
	rand.Read(b[:]) // never fails on Linux (crypto/rand documents a panic otherwise)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// sessionKey is the map key for a cookie value. Keying by a digest rather
// than the id itself keeps the map lookup from leaking, through its timing,
// how much of a guessed id matches; the stored id is then compared in
// constant time.
func sessionKey(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// csrfToken binds a token to a session: an attacker page cannot read the
// cookie, so it cannot compute the token without the per-process key.
func csrfToken(key []byte, id string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("csrf\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// lookup returns the live session for a cookie value. REQUIRES: a.mu held.
func (a *Auth) lookup(id string, now time.Time) *session {
	s := a.sessions[sessionKey(id)]
	if s == nil || subtle.ConstantTimeCompare([]byte(s.id), []byte(id)) != 1 {
		return nil
	}
	if !now.Before(s.expires) {
		delete(a.sessions, sessionKey(id))
		return nil
	}
	return s
}

// maxSessionsPerUser bounds the memory one user's logins hold: beyond it
// the oldest session ends.
const maxSessionsPerUser = 16

// addSession stores s, first dropping expired sessions so abandoned logins
// do not accumulate, and the user's oldest beyond maxSessionsPerUser.
// REQUIRES: a.mu held.
func (a *Auth) addSession(s *session, now time.Time) {
	var oldest [32]byte
	n := 0
	for k, o := range a.sessions {
		switch {
		case !now.Before(o.expires):
			delete(a.sessions, k)
		case o.user == s.user:
			if n == 0 || o.expires.Before(a.sessions[oldest].expires) {
				oldest = k
			}
			n++
		}
	}
	if n >= maxSessionsPerUser {
		delete(a.sessions, oldest)
	}
	a.sessions[sessionKey(s.id)] = s
}
