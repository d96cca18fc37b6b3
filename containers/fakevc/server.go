// The front server: one loopback HTTPS port for the SDK and the control API;
// counts SOAP calls, applies latency and session expiry, swaps worlds on reset.
package main

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// fakevc serves the current world's SOAP handler and the control API.
type fakevc struct {
	topo     *Topology
	username string
	password string

	world   atomic.Pointer[world]
	gen     atomic.Int64
	resetMu sync.Mutex

	usage *counters // calls, response bytes and server time (counters.go)

	mu             sync.Mutex
	latency        map[string]time.Duration
	taskDelays     map[string]int
	sessionTimeout time.Duration

	extra listeners // extra HTTPS ports for TLS checks (listeners.go)
	limits
}

func newFakevc(topo *Topology, username, password string) (*fakevc, error) {
	s := &fakevc{topo: topo, username: username, password: password, usage: newCounters(),
		limits: limits{maxBody: defaultMaxBody, bodyTimeout: defaultBodyTimeout}}
	s.clearControls()
	w, err := newWorld(topo, s.userinfo())
	if err != nil {
		return nil, err
	}
	s.world.Store(w)
	return s, nil
}

func (s *fakevc) userinfo() *url.Userinfo { return url.UserPassword(s.username, s.password) }

// clearControls forgets latency, task delays, the session timeout and the
// call counters (faults live in the world and go with it).
func (s *fakevc) clearControls() {
	s.usage.clear()
	s.mu.Lock()
	s.latency = map[string]time.Duration{}
	s.taskDelays = map[string]int{}
	s.sessionTimeout = 0
	s.mu.Unlock()
	setTaskDelays(nil)
}

// reset builds a new world from the topology, swaps it in and closes the
// old one: every session ends, as after a vCenter restart.
func (s *fakevc) reset() (time.Duration, error) {
	s.resetMu.Lock()
	defer s.resetMu.Unlock()
	start := time.Now()
	w, err := newWorld(s.topo, s.userinfo())
	if err != nil {
		return 0, err
	}
	old := s.world.Swap(w)
	s.clearControls()
	s.extra.closeAll()
	s.gen.Add(1)
	took := time.Since(start)
	go old.close() // calls still in flight on it finish first
	return took, nil
}

func (s *fakevc) close() {
	s.extra.closeAll()
	s.world.Load().close()
}

func (s *fakevc) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	defer s.recoverPanic(rw, r)
	if strings.HasPrefix(r.URL.Path, controlPrefix) {
		s.control(rw, r)
		return
	}
	body, ok := s.readBody(rw, r)
	if !ok {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	w := s.world.Load()
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/sdk") {
		w.handler.ServeHTTP(rw, r)
		return
	}
	method := soapMethod(body)
	key := ""
	if c, err := r.Cookie(soap.SessionCookieName); err == nil {
		key = c.Value
	}

	s.mu.Lock()
	delay, ok := s.latency[method]
	if !ok {
		delay = s.latency["*"]
	}
	timeout := s.sessionTimeout
	s.mu.Unlock()

	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	out := &xsiWriter{ResponseWriter: s.usage.call(rw, method, key)}
	w.expireIdle(timeout, key)
	// Derived figures match the facts before any call can read them.
	w.d.syncIfDirty()
	w.handler.ServeHTTP(out, r)
	out.finish()
	w.done(key)
}

// expireIdle ends the sessions idle for longer than timeout (0: never),
// then marks key's session busy.
func (w *world) expireIdle(timeout time.Duration, key string) {
	now := time.Now()
	var idle []string
	var quiet []types.UserSession
	if timeout > 0 {
		quiet = w.sessions() // those that never called after their login are idle since then
	}
	w.mu.Lock()
	if timeout > 0 {
		for k, a := range w.activity {
			if a.inflight == 0 && now.Sub(a.last) > timeout {
				idle = append(idle, k)
			}
		}
		for _, us := range quiet {
			if _, seen := w.activity[us.Key]; !seen && now.Sub(us.LastActiveTime) > timeout {
				idle = append(idle, us.Key)
			}
		}
	}
	if key != "" && !contains(idle, key) {
		a := w.activity[key]
		if a == nil {
			a = &activity{}
			w.activity[key] = a
		}
		a.inflight++
		a.last = now
	}
	w.mu.Unlock()
	w.terminate(idle)
}

// done marks the end of one of key's calls.
func (w *world) done(key string) {
	if key == "" {
		return
	}
	w.mu.Lock()
	if a := w.activity[key]; a != nil {
		a.inflight--
		a.last = time.Now()
	}
	w.mu.Unlock()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// soapMethod is the name of the first element in a SOAP request's Body.
func soapMethod(body []byte) string {
	dec := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok {
			if inBody {
				return se.Name.Local
			}
			inBody = se.Name.Local == "Body"
		}
	}
}

// setTaskDelays keeps tasks of the named methods running for the given
// milliseconds. vcsim reads simulator.TaskDelay from each task's goroutine,
// so the whole value is replaced, never its map edited. LockHandoff=0 keeps
// vcsim from holding the task's object lock during the delay (which would
// block every read of that object).
func setTaskDelays(delays map[string]int) {
	if len(delays) == 0 {
		simulator.TaskDelay = simulator.DelayConfig{}
		return
	}
	m := map[string]int{"LockHandoff": 0}
	for k, v := range delays {
		m[k] = v
	}
	simulator.TaskDelay = simulator.DelayConfig{MethodDelay: m}
}
