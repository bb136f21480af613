package auth

import "time"

// Login failure limits. Per user, to slow guessing one account from many
// addresses; per address (higher, since analysts may share a NAT), to slow
// one client trying many accounts.
const (
	maxUserFailures = 5
	maxAddrFailures = 20
	failureWindow   = 15 * time.Minute
	maxLimiterKeys  = 100000 // bounds memory under a spray of user names
)

type window struct {
	failures int
	reset    time.Time
}

// limiter counts login failures per key in fixed windows. Not safe for
// concurrent use; Auth guards it with its mutex.
type limiter struct {
	max  int
	keys map[string]*window
}

func newLimiter(max int) *limiter { return &limiter{max: max, keys: make(map[string]*window)} }

// blocked reports whether key has used up its failures, and until when.
func (l *limiter) blocked(key string, now time.Time) (bool, time.Time) {
	w := l.keys[key]
	if w == nil || !now.Before(w.reset) {
		return false, time.Time{}
	}
	return w.failures >= l.max, w.reset
}

func (l *limiter) fail(key string, now time.Time) {
	w := l.keys[key]
	if w == nil || !now.Before(w.reset) {
		if len(l.keys) >= maxLimiterKeys {
			l.prune(now)
		}
		if len(l.keys) >= maxLimiterKeys {
			return // full of live windows: stop tracking new keys rather than grow
		}
		w = &window{reset: now.Add(failureWindow)}
		l.keys[key] = w
	}
	w.failures++
}

// refund takes back one failure charged to key.
func (l *limiter) refund(key string) {
	if w := l.keys[key]; w != nil && w.failures > 0 {
		w.failures--
	}
}

func (l *limiter) clear(key string) { delete(l.keys, key) }

func (l *limiter) prune(now time.Time) {
	for k, w := range l.keys {
		if !now.Before(w.reset) {
			delete(l.keys, k)
		}
	}
}
