package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Handler()
	for _, tc := range []struct{ path, ctype, body string }{
		{"/", "text/html", `src="/ui/app.js"`},
		{"/ui/app.js", "javascript", "X-CSRF-Token"},
		{"/", "text/html", `src="/ui/sensors.js"`},
		{"/ui/sensors.js", "javascript", "/sensors/history"},
		{"/ui/style.css", "text/css", "body"},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", tc.path, nil))
		if w.Code != http.StatusOK || !strings.Contains(w.Header().Get("Content-Type"), tc.ctype) || !strings.Contains(w.Body.String(), tc.body) {
			t.Errorf("GET %s: %d %q, body lacks %q", tc.path, w.Code, w.Header().Get("Content-Type"), tc.body)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'none'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/ui/nosuch.js", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("GET /ui/nosuch.js: %d, want 404", w.Code)
	}
}
