package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// Handler serves Docket's job API on paths relative to its mount:
//
//	GET /q/<docket terms>   submit; answers {"Requested","id","query","url"}
//	GET /status/<id>        state, history and per-sensor results
//	GET /<id>/merged.pcap   the result, once Completed (409 before)
//
// A job removed by expiry answers 410 Gone on /status/<id> and on its
// result, with the reason, while the Manager remembers it.
//
//	GET /ids[?id=a,b]       the ids the user may see
//	GET /urls[?id=a,b]      {id: url} of the user's completed results
//
// translate turns the path after /q (e.g. "/host/1.2.3.4/after/5m") into
// clauses; user names the authenticated user of a request ("" is refused).
// Sensors are chosen with ?sensors=a,b.
func (m *Manager) Handler(translate func(path string) (clauses []string, err error), user func(*http.Request) string) http.Handler {
	return &handler{m: m, translate: translate, user: user}
}

type handler struct {
	m         *Manager
	translate func(string) ([]string, error)
	user      func(*http.Request) string
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpError(w, http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
		return
	}
	u := h.user(r)
	if u == "" {
		httpError(w, http.StatusUnauthorized, "not authenticated")
		return
	}
	p := r.URL.Path
	switch {
	case p == "/q" || strings.HasPrefix(p, "/q/"):
		h.submit(w, r, u, strings.TrimPrefix(p, "/q"))
	case strings.HasPrefix(p, "/status/"):
		h.status(w, u, strings.TrimPrefix(p, "/status/"))
	case p == "/ids":
		h.list(w, r, u, false)
	case p == "/urls":
		h.list(w, r, u, true)
	default:
		id, file, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/")
		if !ok || file != resultName {
			httpError(w, http.StatusNotFound, "no such path %q", p)
			return
		}
		h.result(w, r, u, id)
	}
}

func (h *handler) submit(w http.ResponseWriter, r *http.Request, u, terms string) {
	clauses, err := h.translate(terms)
	if err != nil {
		httpError(w, http.StatusBadRequest, "query %q: %v", terms, err)
		return
	}
	var sensors []string
	if s := r.URL.Query().Get("sensors"); s != "" {
		sensors = splitList(s)
	}
	j, err := h.m.Submit(r.Context(), u, clauses, sensors)
	if errors.Is(err, ErrBadQuery) {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"Requested": j.Requested.UTC().Format(time.RFC3339),
		"id":        j.ID,
		"query":     j.Query,
		"url":       j.URL(),
	})
}

// job fetches id for user u, answering 404, 410 (expired) or 403 itself
// when it cannot.
func (h *handler) job(w http.ResponseWriter, u, id string) (Job, bool) {
	j, err := h.m.Get(id)
	var gone *ExpiredError
	if errors.As(err, &gone) {
		if !h.m.cfg.Allowed(u, gone.Owner) {
			httpError(w, http.StatusForbidden, "job %q belongs to another user", id)
			return Job{}, false
		}
		writeJSON(w, http.StatusGone, map[string]string{"error": gone.Error(), "id": id, "reason": gone.Reason,
			"expired": gone.Expired.UTC().Format(time.RFC3339)})
		return Job{}, false
	}
	if err != nil {
		httpError(w, http.StatusNotFound, "job %q: no such job", id)
		return Job{}, false
	}
	if !h.m.cfg.Allowed(u, j.Owner) {
		httpError(w, http.StatusForbidden, "job %q belongs to another user", id)
		return Job{}, false
	}
	return j, true
}

// statusBody is one job in /status, in Docket's shape: state, the history
// as events, and the sensors' results as requests.
type statusBody struct {
	State     State                  `json:"state"`
	Partial   bool                   `json:"partial"`
	Missing   []string               `json:"missing,omitempty"`
	Error     string                 `json:"error,omitempty"`
	Query     string                 `json:"query"`
	Requested time.Time              `json:"requested"`
	URL       string                 `json:"url"`
	Events    []Event                `json:"events"`
	Requests  map[string]SensorEvent `json:"requests"`
}

func (h *handler) status(w http.ResponseWriter, u, id string) {
	j, ok := h.job(w, u, id)
	if !ok {
		return
	}
	b := statusBody{
		State: j.State, Partial: j.Partial, Missing: j.Missing, Error: j.Error,
		Query: j.Query, Requested: j.Requested, URL: j.URL(),
		Events: j.History, Requests: map[string]SensorEvent{},
	}
	for _, s := range j.Results {
		b.Requests[s.Sensor] = s
	}
	writeJSON(w, http.StatusOK, map[string]statusBody{j.ID: b})
}

func (h *handler) list(w http.ResponseWriter, r *http.Request, u string, urls bool) {
	var want map[string]bool
	if s := r.URL.Query().Get("id"); s != "" {
		want = map[string]bool{}
		for _, id := range splitList(s) {
			want[id] = true
		}
	}
	ids := []string{}
	m := map[string]string{}
	for _, j := range h.m.List() {
		if (want != nil && !want[j.ID]) || !h.m.cfg.Allowed(u, j.Owner) {
			continue
		}
		if !urls {
			ids = append(ids, j.ID)
		} else if j.State == Completed {
			m[j.ID] = j.URL()
		}
	}
	if urls {
		writeJSON(w, http.StatusOK, m)
		return
	}
	writeJSON(w, http.StatusOK, ids)
}

func (h *handler) result(w http.ResponseWriter, r *http.Request, u, id string) {
	j, ok := h.job(w, u, id)
	if !ok {
		return
	}
	if j.State != Completed {
		httpError(w, http.StatusConflict, "job %q is %s, not Completed", id, j.State)
		return
	}
	// Opened before serving: an expiry that removes it now cannot cut the
	// answer short.
	f, err := os.Open(h.m.ResultPath(id))
	if err != nil {
		// Expired between Get and Open.
		httpError(w, http.StatusGone, "job %q: result gone: %v", id, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "stat %s: %v", f.Name(), err)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	if j.Partial {
		w.Header().Set("X-Stenofleet-Missing-Sensors", strings.Join(j.Missing, ","))
	}
	http.ServeContent(w, r, id+".pcap", st.ModTime(), f)
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to tell it
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}
