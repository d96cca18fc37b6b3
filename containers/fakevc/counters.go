// Usage counters: SOAP calls served, response bytes and server time, by
// method and by session, for the control API's GET /calls.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sync"
	"time"
)

// noSession is the session id of the calls made without a session cookie
// (RetrieveServiceContent, Login).
const noSession = "-"

// counters count what the SOAP front serves. Bytes are those of the response
// body as the SOAP handler wrote it (the XML, faults included), counted as
// they are written: a client that has read an answer finds it counted.
type counters struct {
	mu       sync.Mutex
	all      figures
	sessions map[string]*figures
}

// figures are the counters of all calls or of one session's.
type figures struct {
	Calls    int64                    `json:"calls"`
	Bytes    int64                    `json:"bytes"`
	ServerMs float64                  `json:"server_ms"`
	Methods  map[string]*methodFigure `json:"methods"`
}

type methodFigure struct {
	Calls    int64   `json:"calls"`
	Bytes    int64   `json:"bytes"`
	ServerMs float64 `json:"server_ms"`
}

func newFigures() figures { return figures{Methods: map[string]*methodFigure{}} }

func (f *figures) method(name string) *methodFigure {
	m := f.Methods[name]
	if m == nil {
		m = &methodFigure{}
		f.Methods[name] = m
	}
	return m
}

func (f *figures) add(method string, calls, bytes int64, ms float64) {
	f.Calls, f.Bytes, f.ServerMs = f.Calls+calls, f.Bytes+bytes, f.ServerMs+ms
	if method != "" {
		m := f.method(method)
		m.Calls, m.Bytes, m.ServerMs = m.Calls+calls, m.Bytes+bytes, m.ServerMs+ms
	}
}

func (f *figures) clone() figures {
	out := figures{Calls: f.Calls, Bytes: f.Bytes, ServerMs: round3(f.ServerMs), Methods: make(map[string]*methodFigure, len(f.Methods))}
	for k, m := range f.Methods {
		out.Methods[k] = &methodFigure{Calls: m.Calls, Bytes: m.Bytes, ServerMs: round3(m.ServerMs)}
	}
	return out
}

func round3(ms float64) float64 { return float64(int64(ms*1000+0.5)) / 1000 }

func newCounters() *counters {
	return &counters{all: newFigures(), sessions: map[string]*figures{}}
}

// sessionID names a session in the counters without revealing its key (the
// key is the session cookie, a credential): the first 16 hex digits of its
// SHA-256. conformance.control.session_id computes the same from a client's
// cookie.
func sessionID(key string) string {
	if key == "" {
		return noSession
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:8])
}

func (u *counters) record(session, method string, calls, bytes int64, ms float64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.all.add(method, calls, bytes, ms)
	s := u.sessions[session]
	if s == nil {
		f := newFigures()
		s = &f
		u.sessions[session] = s
	}
	s.add(method, calls, bytes, ms)
}

// call counts one SOAP call and returns the writer that counts its answer.
func (u *counters) call(rw http.ResponseWriter, method, key string) *countingWriter {
	id := sessionID(key)
	u.record(id, method, 1, 0, 0)
	return &countingWriter{ResponseWriter: rw, u: u, session: id, method: method, start: time.Now()}
}

func (u *counters) clear() {
	u.mu.Lock()
	u.all, u.sessions = newFigures(), map[string]*figures{}
	u.mu.Unlock()
}

// report is GET /calls: "total" and "by_method" (calls, as before bytes were
// counted), then bytes and server time, overall, per method and per session.
func (u *counters) report() map[string]any {
	u.mu.Lock()
	defer u.mu.Unlock()
	by := make(map[string]int64, len(u.all.Methods))
	for k, m := range u.all.Methods {
		by[k] = m.Calls
	}
	sessions := make(map[string]figures, len(u.sessions))
	for id, f := range u.sessions {
		sessions[id] = f.clone()
	}
	all := u.all.clone()
	return map[string]any{"total": all.Calls, "by_method": by, "bytes": all.Bytes, "server_ms": all.ServerMs,
		"methods": all.Methods, "sessions": sessions}
}

// countingWriter counts the body bytes of one answer. Server time runs from
// the start of the call (after any injected latency) to its first write: the
// call itself and the encoding of the answer, not the network.
type countingWriter struct {
	http.ResponseWriter
	u       *counters
	session string
	method  string
	start   time.Time
	wrote   bool
}

func (c *countingWriter) Write(p []byte) (int, error) {
	var ms float64
	if !c.wrote {
		c.wrote = true
		ms = float64(time.Since(c.start).Microseconds()) / 1000
	}
	c.u.record(c.session, c.method, 0, int64(len(p)), ms)
	return c.ResponseWriter.Write(p)
}
