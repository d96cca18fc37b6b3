// A world: one simulator model built from the topology, with its hooks,
// derived state and the SOAP handler that serves it.
package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// world is one vCenter: what a reset throws away and builds anew.
type world struct {
	topo    *Topology
	model   *simulator.Model
	reg     *simulator.Registry
	inv     *inventory
	d       *deriver
	ext     *extensions
	pager   *pager
	handler http.Handler
	dsRoot  string
	built   time.Duration

	mu       sync.Mutex
	faults   []faultRule
	activity map[string]*activity // session key -> activity, for the idle timeout
	closed   sync.Once
}

// activity is when a session last finished a call, and how many it has in
// flight (a session waiting in a long poll is not idle).
type activity struct {
	last     time.Time
	inflight int
}

// newWorld builds the topology into a fresh model. Building is
// deterministic: two worlds of one topology have the same morefs.
func newWorld(topo *Topology, user *url.Userinfo) (*world, error) {
	start := time.Now()
	dsRoot, err := os.MkdirTemp("", "fakevc-ds-")
	if err != nil {
		return nil, err
	}
	m := emptyModel()
	m.ServiceContent.About.InstanceUuid = instanceUUID(topo.Name)
	if err := m.Create(); err != nil {
		_ = os.RemoveAll(dsRoot)
		return nil, err
	}
	// vcsim registers the ServiceContent's snmpSystem with an empty
	// limits.capability, which pyvmomi cannot parse.
	if ref := m.ServiceContent.SnmpSystem; ref != nil {
		if snmp, ok := m.Map().Get(*ref).(*mo.HostSnmpSystem); ok {
			snmp.Limits.Capability = types.HostSnmpAgentCapabilityCOMPLETE
		}
	}
	w := &world{topo: topo, model: m, reg: m.Map(), dsRoot: dsRoot, activity: map[string]*activity{},
		pager: newPager(topo.PageSize)}
	w.d = newDeriver(w.reg, nil)
	w.ext = newExtensions(w)
	w.d.notify = w.ext.notifyAll
	w.d.after = func() {
		live := w.sessions()
		w.ext.prune(live)
		w.pager.drop(func(r *pendingResult) bool {
			return slices.ContainsFunc(live, func(s types.UserSession) bool { return s.Key == r.session })
		})
	}
	w.reg.AddHandler(&fidelity{ext: w.ext, d: w.d})
	w.reg.Handler = w.ext.handle
	inv, err := build(m, topo, dsRoot)
	if err != nil {
		m.Remove()
		_ = os.RemoveAll(dsRoot)
		return nil, fmt.Errorf("%s: %v", topo.Source, err)
	}
	w.inv, w.d.inv = inv, inv
	w.d.touch(nil)
	w.d.sync()
	w.d.start()

	w.handler = w.serveMux(user)
	w.built = time.Since(start)
	return w, nil
}

// serveMux is the world's HTTP handler: vcsim's SDK and the few paths
// fakevc serves besides it. vcsim's Service.NewServer is not used: it
// opens a second, plain-HTTP listener of its own (advertised in the
// vcsim.server.url setting) where calls are neither counted, delayed nor
// expired, and serves /folder (datastore files: PUT, GET, listings),
// /guestFile and /nfc without any login. Here the front server is the one
// door; /folder needs a session and the rest is 404.
func (w *world) serveMux(user *url.Userinfo) http.Handler {
	svc := w.model.Service
	// SessionManager.Login checks the credentials in Listen.User; no
	// listener is made from it.
	svc.Listen = &url.URL{Scheme: "https", Host: "127.0.0.1", User: user}
	path := w.reg.Path
	svc.RegisterSDK(w.reg, path+"/vimService")
	mux := svc.ServeMux
	mux.HandleFunc(path+"/vimServiceVersions.xml", svc.ServiceVersions)
	mux.HandleFunc(path+"/vsanServiceVersions.xml", svc.ServiceVersionsVsan)
	mux.HandleFunc("/about", svc.About)
	mux.HandleFunc("/folder/", w.serveFolder)
	return mux
}

// close ends the world: long polls are cancelled, the model's files removed.
func (w *world) close() {
	w.closed.Do(func() {
		w.ext.cancelWaits()
		w.d.close()
		w.model.Remove()
		_ = os.RemoveAll(w.dsRoot)
	})
}

// emptyModel is a vCenter model with no inventory at all: build adds it.
func emptyModel() *simulator.Model {
	m := simulator.VPX()
	m.Datacenter, m.Portgroup, m.Host, m.Cluster, m.ClusterHost = 0, 0, 0, 0, 0
	m.Datastore, m.Machine, m.Autostart = 0, 0, false
	return m
}

// instanceUUID is stable for a topology, so node names that embed the
// vCenter instanceUuid survive a simulator restart.
func instanceUUID(topology string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("vcconform:fakevc:"+topology)).String()
}

// controlContext is a context for changes made by the control API.
func (w *world) controlContext() *simulator.Context {
	return &simulator.Context{Context: w.model.Service.Context.Context, Map: w.reg,
		Session: &simulator.Session{UserSession: types.UserSession{Key: "fakevc-control"}, Registry: simulator.NewRegistry(), Map: w.reg}}
}

// sessions are the logged-in sessions of this world.
func (w *world) sessions() []types.UserSession {
	s := &simulator.Session{Registry: simulator.NewRegistry(), Map: w.reg}
	ref := w.model.ServiceContent.SessionManager
	if ref == nil {
		return nil
	}
	if sm, ok := s.Get(*ref).(*simulator.SessionManager); ok {
		return sm.SessionList
	}
	return nil
}

// terminate ends sessions by key (unknown keys are ignored).
func (w *world) terminate(keys []string) int {
	ref := w.model.ServiceContent.SessionManager
	if ref == nil || len(keys) == 0 {
		return 0
	}
	sm := w.reg.Get(*ref).(*simulator.SessionManager)
	known := map[string]bool{}
	for _, s := range w.sessions() {
		known[s.Key] = true
	}
	n := 0
	for _, k := range keys {
		if known[k] {
			if sm.TerminateSession(w.controlContext(), &types.TerminateSession{This: *ref, SessionId: []string{k}}).Fault() == nil {
				n++
			}
		}
	}
	w.mu.Lock()
	for _, k := range keys {
		delete(w.activity, k)
	}
	w.mu.Unlock()
	return n
}
