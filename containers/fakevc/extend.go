package main

import (
	"slices"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// extensions adds SOAP methods that vcsim lacks to some of its objects.
//
// vcsim dispatches a call to the object that the caller's session resolves
// the moref to: the session's own registry first, then the global one. The
// registry's Handler hook is overruled by that lookup, so a wrapper that adds
// methods is put into the caller's session registry when the caller first
// calls a method on the object, and taken out of every session when the
// object leaves the inventory. The global registry keeps vcsim's own objects,
// so vcsim's type switches (*simulator.ClusterComputeResource ...) still hold.
// Property reads see the same fields: a wrapper embeds the very object.
type extensions struct {
	mu       sync.Mutex
	sessions map[types.ManagedObjectReference][]*simulator.Registry
}

func newExtensions() *extensions {
	return &extensions{sessions: map[types.ManagedObjectReference][]*simulator.Registry{}}
}

// extension is a wrapper that adds the SOAP methods it names.
type extension interface {
	mo.Reference
	adds() []string
}

// wrap returns the wrapper for obj, or nil when nothing is added to its type.
func wrap(obj mo.Reference) extension {
	switch o := obj.(type) {
	case *simulator.ClusterComputeResource:
		return &cluster{o}
	}
	return nil
}

// handle is the registry's Handler: it runs before every call.
func (e *extensions) handle(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
	obj := ctx.Map.Get(m.This)
	w := wrap(obj)
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
