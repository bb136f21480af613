// Package web is stenofleet's page for analysts: plain HTML, CSS and
// JavaScript embedded in the binary, loading nothing from elsewhere. The
// page talks to stenofleet's own API (GET /session, /sensors,
// /sensors/history, /ids, /status/<id>, /q/query/<text>; POST /query,
// /preview).
//
// Serve Handler behind the same authentication as the API at "GET /{$}"
// and "GET /ui/".
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// csp lets the page run only its own script and style and talk only to
// stenofleet; blob: is the downloaded PCAP.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Handler serves the page at / and its assets at /ui/.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.URL.Path == "/" {
			h.Set("Cache-Control", "no-store")
			http.ServeFileFS(w, r, sub, "index.html")
			return
		}
		files.ServeHTTP(w, r)
	})
}
