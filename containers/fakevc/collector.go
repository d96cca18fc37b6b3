// The PropertyCollector as vCenter runs it where vcsim's differs: traversal
// specs apply only to objects of their type and never loop, and a connected
// host's usage figures are sent even when they are 0.
package main

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// propertyCollector serves a session's PropertyCollector.
//
// vcsim applies a TraversalSpec's path to whatever object it reaches,
// ignoring the spec's type, and follows specs recursively with no memory of
// where it has been: the recursive traversal that oslo.vmware builds
// (resource pool -> VMs -> resource pool ...) recurses until the Go stack
// overflows, which kills the process. vCenter applies a spec only to objects
// of its type (or a subtype) and visits each object once per spec. For a
// retrieval, fakevc does the traversal itself, iteratively, and hands vcsim
// the objects it reached; a filter (WaitForUpdatesEx) keeps its spec when no
// selection spec can reach itself, and is given the objects reached at its
// creation otherwise (its membership then no longer follows the inventory:
// a documented gap; no client the suite knows makes such a filter).
//
// It replaces vcsim's singleton in the registry; vcsim makes each session's
// instance of the singleton by the registered object's type, so every
// session gets one of these, and CreatePropertyCollector makes them too.
type propertyCollector struct {
	simulator.PropertyCollector
}

// installCollector puts fakevc's PropertyCollector in the place of vcsim's.
func installCollector(reg *simulator.Registry, ref types.ManagedObjectReference) {
	pc := &propertyCollector{}
	pc.Self = ref
	reg.Put(pc)
}

func (pc *propertyCollector) CreatePropertyCollector(ctx *simulator.Context, c *types.CreatePropertyCollector) soap.HasFault {
	return &methods.CreatePropertyCollectorBody{Res: &types.CreatePropertyCollectorResponse{
		Returnval: ctx.Session.Put(&propertyCollector{}).Reference()}}
}

func (pc *propertyCollector) RetrievePropertiesEx(ctx *simulator.Context, r *types.RetrievePropertiesEx) soap.HasFault {
	specs, fault := traverse(ctx, r.SpecSet)
	if fault != nil {
		return &methods.RetrievePropertiesExBody{Fault_: simulator.Fault("", fault)}
	}
	req := *r
	req.SpecSet = specs
	body := pc.PropertyCollector.RetrievePropertiesEx(ctx, &req)
	if b, ok := body.(*methods.RetrievePropertiesExBody); ok && b.Res != nil && b.Res.Returnval != nil {
		sendUsage(ctx, b.Res.Returnval.Objects)
	}
	return body
}

func (pc *propertyCollector) RetrieveProperties(ctx *simulator.Context, r *types.RetrieveProperties) soap.HasFault {
	specs, fault := traverse(ctx, r.SpecSet)
	if fault != nil {
		return &methods.RetrievePropertiesBody{Fault_: simulator.Fault("", fault)}
	}
	req := *r
	req.SpecSet = specs
	body := pc.PropertyCollector.RetrieveProperties(ctx, &req)
	if b, ok := body.(*methods.RetrievePropertiesBody); ok && b.Res != nil {
		sendUsage(ctx, b.Res.Returnval)
	}
	return body
}

func (pc *propertyCollector) ContinueRetrievePropertiesEx(ctx *simulator.Context, r *types.ContinueRetrievePropertiesEx) soap.HasFault {
	body := pc.PropertyCollector.ContinueRetrievePropertiesEx(ctx, r)
	if b, ok := body.(*methods.ContinueRetrievePropertiesExBody); ok && b.Res != nil {
		sendUsage(ctx, b.Res.Returnval.Objects)
	}
	return body
}

func (pc *propertyCollector) CreateFilter(ctx *simulator.Context, c *types.CreateFilter) soap.HasFault {
	if recursive(c.Spec) {
		specs, fault := traverse(ctx, []types.PropertyFilterSpec{c.Spec})
		if fault != nil {
			return &methods.CreateFilterBody{Fault_: simulator.Fault("", fault)}
		}
		req := *c
		req.Spec = specs[0]
		c = &req
	}
	return pc.PropertyCollector.CreateFilter(ctx, c)
}

func (pc *propertyCollector) WaitForUpdatesEx(ctx *simulator.Context, r *types.WaitForUpdatesEx) soap.HasFault {
	body := pc.PropertyCollector.WaitForUpdatesEx(ctx, r)
	if b, ok := body.(*methods.WaitForUpdatesExBody); ok && b.Res != nil && b.Res.Returnval != nil {
		sendUsageUpdates(ctx, b.Res.Returnval)
	}
	return body
}

func (pc *propertyCollector) WaitForUpdates(ctx *simulator.Context, r *types.WaitForUpdates) soap.HasFault {
	body := pc.PropertyCollector.WaitForUpdates(ctx, r)
	if b, ok := body.(*methods.WaitForUpdatesBody); ok && b.Res != nil {
		sendUsageUpdates(ctx, &b.Res.Returnval)
	}
	return body
}

// -- traversal --------------------------------------------------------------

func isTrue(b *bool) bool { return b != nil && *b }

// recursive tells whether a selection spec of the filter spec can select
// itself again by name (the only way a traversal can loop).
func recursive(spec types.PropertyFilterSpec) bool {
	named := map[string]*types.TraversalSpec{}
	var collect func([]types.BaseSelectionSpec)
	collect = func(sel []types.BaseSelectionSpec) {
		for _, s := range sel {
			if ts, ok := s.(*types.TraversalSpec); ok {
				if ts.Name != "" {
					if _, seen := named[ts.Name]; seen {
						continue
					}
					named[ts.Name] = ts
				}
				collect(ts.SelectSet)
			}
		}
	}
	for _, o := range spec.ObjectSet {
		collect(o.SelectSet)
	}
	// A spec loops when, from one named spec, its selections lead back to
	// its name.
	for name, ts := range named {
		seen := map[string]bool{}
		stack := []*types.TraversalSpec{ts}
		for len(stack) > 0 {
			t := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, s := range t.SelectSet {
				next, ok := s.(*types.TraversalSpec)
				n := s.GetSelectionSpec().Name
				if !ok {
					next = named[n]
				}
				if n == name {
					return true
				}
				if next != nil && !seen[n+"\x00"+next.Path] {
					seen[n+"\x00"+next.Path] = true
					stack = append(stack, next)
				}
			}
		}
	}
	return false
}

// traverse replaces each filter spec's selection specs by the objects they
// reach, as vCenter selects them: a TraversalSpec applies to objects of its
// type or a subtype; an object is reported unless the spec that reached it
// says skip; each object is followed once per spec, without recursion.
func traverse(ctx *simulator.Context, specs []types.PropertyFilterSpec) ([]types.PropertyFilterSpec, types.BaseMethodFault) {
	out := make([]types.PropertyFilterSpec, len(specs))
	for i, spec := range specs {
		out[i] = spec
		selects := false
		for _, o := range spec.ObjectSet {
			selects = selects || len(o.SelectSet) > 0
		}
		if !selects {
			continue
		}
		named := map[string]*types.TraversalSpec{}
		var name func([]types.BaseSelectionSpec)
		name = func(sel []types.BaseSelectionSpec) {
			for _, s := range sel {
				if ts, ok := s.(*types.TraversalSpec); ok && ts.Name != "" && named[ts.Name] == nil {
					named[ts.Name] = ts
					name(ts.SelectSet)
				} else if ok {
					name(ts.SelectSet)
				}
			}
		}
		for _, o := range spec.ObjectSet {
			name(o.SelectSet)
		}

		var objects []types.ObjectSpec
		reported := map[types.ManagedObjectReference]bool{}
		report := func(ref types.ManagedObjectReference) {
			if !reported[ref] {
				reported[ref] = true
				objects = append(objects, types.ObjectSpec{Obj: ref, Skip: types.NewBool(false)})
			}
		}
		type step struct {
			ref types.ManagedObjectReference
			sel []types.BaseSelectionSpec
		}
		type visit struct {
			ref  types.ManagedObjectReference
			spec *types.TraversalSpec
		}
		visited := map[visit]bool{}
		for _, o := range spec.ObjectSet {
			if lookup(ctx, o.Obj) == nil {
				// vcsim answers for a missing root (a fault, or a missing
				// object when the spec asks for one).
				objects = append(objects, types.ObjectSpec{Obj: o.Obj, Skip: types.NewBool(false)})
				continue
			}
			if !isTrue(o.Skip) {
				report(o.Obj)
			}
			stack := []step{{o.Obj, o.SelectSet}}
			for len(stack) > 0 {
				cur := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				obj := lookup(ctx, cur.ref)
				if obj == nil {
					continue
				}
				// Last pushed is first followed: push in reverse to keep the specs' order.
				var next []step
				for _, s := range cur.sel {
					ts, ok := s.(*types.TraversalSpec)
					if !ok {
						ts = named[s.GetSelectionSpec().Name]
						if ts == nil {
							return nil, &types.InvalidArgument{InvalidProperty: "selectSet: no TraversalSpec named " + s.GetSelectionSpec().Name}
						}
					}
					if !ofType(obj, ts.Type) || visited[visit{cur.ref, ts}] {
						continue
					}
					visited[visit{cur.ref, ts}] = true
					for _, ref := range refsAt(ctx, cur.ref, obj, ts.Path) {
						if !isTrue(ts.Skip) {
							report(ref)
						}
						next = append(next, step{ref, ts.SelectSet})
					}
				}
				for j := len(next) - 1; j >= 0; j-- {
					stack = append(stack, next[j])
				}
			}
		}
		out[i].ObjectSet = objects
	}
	return out, nil
}

// lookup finds an object in the caller's session (views, collectors) or the
// inventory.
func lookup(ctx *simulator.Context, ref types.ManagedObjectReference) any {
	if ctx.Session != nil {
		if obj := ctx.Session.Get(ref); obj != nil {
			return obj
		}
	}
	if obj := ctx.Map.Get(ref); obj != nil {
		return obj
	}
	return nil
}

// ofType tells whether a managed object is of the named type or a subtype
// (a ClusterComputeResource is a ComputeResource and a ManagedEntity).
func ofType(obj any, name string) bool {
	t := moValue(obj).Type()
	if t.Name() == name {
		return true
	}
	f, ok := t.FieldByName(name)
	return ok && f.Anonymous
}

// refsAt reads the references at a property path of an object, under its lock.
func refsAt(ctx *simulator.Context, ref types.ManagedObjectReference, obj any, path string) []types.ManagedObjectReference {
	var out []types.ManagedObjectReference
	read := func() {
		v, ok := fieldByPath(obj, path)
		if !ok {
			return
		}
		switch x := v.(type) {
		case types.ManagedObjectReference:
			out = []types.ManagedObjectReference{x}
		case *types.ManagedObjectReference:
			if x != nil {
				out = []types.ManagedObjectReference{*x}
			}
		case []types.ManagedObjectReference:
			out = append([]types.ManagedObjectReference(nil), x...)
		}
	}
	if ctx.Map.Get(ref) != nil {
		ctx.WithLock(ref, read)
	} else {
		read() // a session object (a view): vcsim does not lock those either
	}
	return out
}

// -- a connected host's usage, 0 included ------------------------------------

// HostListSummaryQuickStats is vim25's type of that name as vCenter sends it
// for a connected host: its CPU and memory usage always present, 0 included
// (govmomi's type leaves a 0 out, and oslo.vmware's clients then find no
// attribute at all). The outer fields shadow the embedded ones.
type HostListSummaryQuickStats struct {
	types.HostListSummaryQuickStats
	OverallCpuUsage    int32 `xml:"overallCpuUsage"`
	OverallMemoryUsage int32 `xml:"overallMemoryUsage"`
}

// HostListSummary is vim25's type of that name, carrying the quickStats above.
type HostListSummary struct {
	types.HostListSummary
	QuickStats HostListSummaryQuickStats `xml:"quickStats"`
}

func wireQuickStats(q types.HostListSummaryQuickStats) HostListSummaryQuickStats {
	return HostListSummaryQuickStats{q, q.OverallCpuUsage, q.OverallMemoryUsage}
}

// usageValue is the value to send for a host's property: quickStats (alone or
// in the summary) with its usage always present when the host is connected.
func usageValue(ctx *simulator.Context, obj types.ManagedObjectReference, val any) any {
	if obj.Type != "HostSystem" {
		return val
	}
	switch v := val.(type) {
	case types.HostListSummaryQuickStats:
		if hostConnected(ctx, obj) {
			return wireQuickStats(v)
		}
	case types.HostListSummary:
		if hostConnected(ctx, obj) {
			return HostListSummary{v, wireQuickStats(v.QuickStats)}
		}
	}
	return val
}

func hostConnected(ctx *simulator.Context, ref types.ManagedObjectReference) bool {
	h, ok := ctx.Map.Get(ref).(*simulator.HostSystem)
	if !ok {
		return false
	}
	connected := false
	ctx.WithLock(ref, func() { connected = h.Runtime.ConnectionState == types.HostSystemConnectionStateConnected })
	return connected
}

func sendUsage(ctx *simulator.Context, objects []types.ObjectContent) {
	for i := range objects {
		for j := range objects[i].PropSet {
			p := &objects[i].PropSet[j]
			p.Val = usageValue(ctx, objects[i].Obj, p.Val)
		}
	}
}

func sendUsageUpdates(ctx *simulator.Context, set *types.UpdateSet) {
	for i := range set.FilterSet {
		for j := range set.FilterSet[i].ObjectSet {
			u := &set.FilterSet[i].ObjectSet[j]
			for k := range u.ChangeSet {
				u.ChangeSet[k].Val = usageValue(ctx, u.Obj, u.ChangeSet[k].Val)
			}
		}
	}
}
