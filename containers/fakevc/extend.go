// Adding and overriding SOAP methods of vcsim's objects, per calling session.
package main

import (
	"context"
	"slices"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// extensions adds SOAP methods that vcsim lacks to some of its objects, and
// overrides some that vcsim gets wrong.
//
// vcsim dispatches a call to the object that the caller's session resolves
// the moref to: the session's own registry first, then the global one. The
// registry's Handler hook is overruled by that lookup, so a wrapper that adds
// methods is put into the caller's session registry when the caller first
// calls one of them, and taken out of every session when the object leaves
// the inventory. The global registry keeps vcsim's own objects, so vcsim's
// type switches (*simulator.ClusterComputeResource ...) still hold. Property
// reads see the same fields: a wrapper embeds the very object.
type extensions struct {
	mu       sync.Mutex
	sessions map[types.ManagedObjectReference][]*simulator.Registry
	w        *world

	// collectors are the PropertyCollectors that have waited for updates:
	// a reset ends their waits, and changes made without Registry.Update are
	// sent to them directly.
	collectors map[*simulator.PropertyCollector]string // -> the session key it belongs to
	// registered is the per-session instance of the singleton
	// PropertyCollector that vcsim has registered for updates. vcsim keys its
	// registry handlers by moref, and every session's instance of the
	// singleton has the singleton's moref: registering one unregisters the
	// one before, which then never hears of a change again (vcsim bug: with
	// two sessions in WaitForUpdatesEx on the default collector, only the
	// last to start receives updates). fakevc forwards every change to the
	// other instances itself.
	registered *simulator.PropertyCollector
}

func newExtensions(w *world) *extensions {
	return &extensions{sessions: map[types.ManagedObjectReference][]*simulator.Registry{}, w: w,
		collectors: map[*simulator.PropertyCollector]string{}}
}

// extension is a wrapper that adds the SOAP methods it names.
type extension interface {
	mo.Reference
	adds() []string
}

// wrap returns the wrapper for obj, or nil when nothing is added to its type.
func (e *extensions) wrap(obj mo.Reference) extension {
	switch o := obj.(type) {
	case *simulator.ClusterComputeResource:
		return &cluster{o, e.w}
	case *simulator.HostSystem:
		return &host{o, e.w}
	case *simulator.Folder:
		return &folder{o, e.w}
	case *simulator.VirtualMachine:
		return &virtualMachine{o, e.w}
	case *mo.ComputeResource:
		return &computeResource{o, e.w}
	case *simulator.Datacenter:
		return &datacenter{o, e.w}
	case *simulator.ResourcePool:
		return &resourcePool{o, e.w}
	case *simulator.Datastore:
		return &datastore{o, e.w}
	}
	return nil
}

// methodKey carries the SOAP method name in a call's context, so a task
// created by the call can be named after it (see fidelity.UpdateObject).
type methodKey struct{}

// handle is the registry's Handler: it runs before every call.
func (e *extensions) handle(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
	if ctx.Context == nil {
		ctx.Context = context.Background()
	}
	ctx.Context = context.WithValue(ctx.Context, methodKey{}, m.Name)
	if f := malformedRequest(m); f != nil {
		return nil, f
	}
	if f := anonymousFault(ctx, m); f != nil {
		return nil, f
	}
	if f := checkNames(ctx, m); f != nil {
		return nil, f
	}
	if ctx.Session != nil {
		if m.This.Type == "PropertyCollector" {
			e.wrapCollector(ctx, m.This)
		}
		e.trackCollector(ctx, m)
	}
	obj := ctx.Map.Get(m.This)
	w := e.wrap(obj)
	if w == nil || !slices.Contains(w.adds(), m.Name) {
		return nil, nil // vcsim serves it; no wrapper enters a session that never asked for one
	}
	if ctx.Session == nil {
		return w, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	reg := ctx.Session.Registry
	if reg.Get(m.This) != nil {
		return w, nil
	}
	// Registry.Put marks an entity green; keep the statuses the object has.
	ent, _ := obj.(mo.Entity)
	var saved mo.ManagedEntity
	if ent != nil {
		saved = *ent.Entity()
	}
	reg.Put(w)
	if ent != nil {
		me := ent.Entity()
		me.ConfigStatus, me.OverallStatus, me.EffectiveRole = saved.ConfigStatus, saved.OverallStatus, saved.EffectiveRole
	}
	e.sessions[m.This] = append(e.sessions[m.This], reg)
	return w, nil
}

// trackCollector notes the collectors that wait for updates (see
// extensions.registered).
func (e *extensions) trackCollector(ctx *simulator.Context, m *simulator.Method) {
	var initial bool
	switch req := m.Body.(type) {
	case *types.WaitForUpdatesEx:
		initial = req.Version == ""
	case *types.WaitForUpdates:
		initial = req.Version == ""
	case *types.CheckForUpdates:
		initial = req.Version == ""
	case *types.DestroyPropertyCollector:
	default:
		return
	}
	pc, ok := asCollector(ctx.Session.Get(m.This))
	if !ok {
		return
	}
	singleton := m.This == e.w.model.ServiceContent.PropertyCollector
	e.mu.Lock()
	defer e.mu.Unlock()
	if m.Name == "DestroyPropertyCollector" {
		key := ctx.Session.Key
		e.w.pager.drop(func(r *pendingResult) bool { return r.session != key || r.collector != m.This })
		delete(e.collectors, pc)
		if singleton {
			e.registered = nil // vcsim unregisters whichever instance held the moref
		}
		return
	}
	e.collectors[pc] = ctx.Session.Key
	if singleton && initial {
		e.registered = pc
	}
}

// prune forgets the collectors of sessions that ended, which would
// otherwise pile up the changes sent to them.
func (e *extensions) prune(live []types.UserSession) {
	keys := make(map[string]bool, len(live))
	for _, s := range live {
		keys[s.Key] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for pc, key := range e.collectors {
		if !keys[key] {
			delete(e.collectors, pc)
			if e.registered == pc {
				e.registered = nil
			}
		}
	}
}

// forward hands a registry change to the instances of the singleton
// collector that vcsim does not notify.
func (e *extensions) forward(f func(pc *simulator.PropertyCollector)) {
	ref := e.w.model.ServiceContent.PropertyCollector
	e.mu.Lock()
	var pcs []*simulator.PropertyCollector
	for pc := range e.collectors {
		if pc != e.registered && pc.Self == ref {
			pcs = append(pcs, pc)
		}
	}
	e.mu.Unlock()
	for _, pc := range pcs {
		f(pc)
	}
}

// collectorList is a snapshot of the known collectors, to call outside the lock.
func (e *extensions) collectorList() []*simulator.PropertyCollector {
	e.mu.Lock()
	defer e.mu.Unlock()
	pcs := make([]*simulator.PropertyCollector, 0, len(e.collectors))
	for pc := range e.collectors {
		pcs = append(pcs, pc)
	}
	return pcs
}

// notifyAll tells every collector about changes made without Registry.Update.
func (e *extensions) notifyAll(ctx *simulator.Context, obj mo.Reference, changes []types.PropertyChange) {
	for _, pc := range e.collectorList() {
		pc.UpdateObject(ctx, obj, changes)
	}
}

// forget takes an object's wrappers out of the sessions that hold one.
func (e *extensions) forget(ctx *simulator.Context, ref types.ManagedObjectReference) {
	e.mu.Lock()
	regs := e.sessions[ref]
	delete(e.sessions, ref)
	e.mu.Unlock()
	for _, reg := range regs {
		reg.Remove(ctx, ref)
	}
}

// cancelWaits ends every WaitForUpdatesEx in progress (with RequestCanceled,
// as CancelWaitForUpdates does), so no long poll outlives its world.
func (e *extensions) cancelWaits() {
	for _, pc := range e.collectorList() {
		pc.CancelWaitForUpdates(&types.CancelWaitForUpdates{This: pc.Self})
	}
}
