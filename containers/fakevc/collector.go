// The PropertyCollector as vCenter runs it where vcsim's differs: traversal
// specs apply only to objects of their type and never loop, answers are paged
// with single-use tokens, a filter's membership follows the inventory, and a
// connected host's usage figures are sent even when they are 0.
package main

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// propertyCollector serves a session's PropertyCollector: the per-session
// instance of the singleton, or one made by CreatePropertyCollector.
//
// vcsim's collector differs from vCenter's in ways clients meet:
//   - it applies a TraversalSpec's path to whatever object it reaches,
//     ignoring the spec's type, and follows specs recursively with no memory
//     of where it has been, so the recursive traversal oslo.vmware builds
//     (resource pool -> VMs -> resource pool ...) recursed until the Go stack
//     overflowed and killed the process;
//   - it pages only when asked, keeps tokens in one process-wide map (any
//     session may continue another's, an abandoned one is never freed) and
//     has no CancelRetrievePropertiesEx (paging.go);
//   - its WaitForUpdatesEx recomputes every filter fully once per change, by
//     that same recursive traversal, sends leave only for deleted objects,
//     answers every version with "-", and registers the collector as a
//     registry handler keyed by moref, so of two sessions waiting on the
//     default collector only the last to start hears of changes.
//
// Here the traversal is fakevc's (iterative; each object followed once per
// spec; a spec applies to its type and subtypes); property values are still
// read by vcsim (embedded), from the objects the traversal reached. Updates:
// the registry's changes reach every collector with a filter through
// fakevc's one registry handler (fidelity.go) and the deriver; a wait
// recomputes each filter's membership once per batch and sends enter for
// the objects that came into reach, modify for changed properties of the
// others (values read afresh) and leave for those no longer reached,
// whatever took them out of reach.
type propertyCollector struct {
	simulator.PropertyCollector // the mo fields clients read (filter), and vcsim's property reads

	w *world // set when the instance first serves a call (extensions.adoptCollector)

	mu      sync.Mutex
	filters []*propertyFilter
	changed map[types.ManagedObjectReference]map[string]bool // property names changed since the last computation
	dirty   bool                                             // something changed: an answer may be due
	// structural: an object came or went (or changed in ways not named), so
	// every filter's membership is computed again; property changes alone
	// recompute it only when a traversal follows a changed property.
	structural bool
	signal     chan struct{} // a change arrived (buffered, 1)
	canceled   chan struct{} // closed by CancelWaitForUpdates; then replaced
	version    int64
	pending    *types.UpdateSet // the rest of a truncated answer

	compute sync.Mutex // one update computation at a time (it owns the filters' refs)
}

// propertyFilter is a filter of a propertyCollector: its spec as the client
// gave it, and the objects the client has been told of.
type propertyFilter struct {
	mo.PropertyFilter

	pc   *propertyCollector
	refs map[types.ManagedObjectReference]bool // guarded by pc.compute
	sent []types.ManagedObjectReference        // refs in the order they entered
}

// installCollector puts fakevc's PropertyCollector in the place of vcsim's.
// vcsim makes each session's instance of the singleton by the registered
// object's type, so every session gets one of these.
func installCollector(w *world) {
	pc := &propertyCollector{w: w}
	pc.Self = w.model.ServiceContent.PropertyCollector
	w.reg.Put(pc)
}

// adoptCollector gives the session's instance of a collector its world, once
// (vcsim makes the instance by reflection, with zero fields).
func (e *extensions) adoptCollector(ctx *simulator.Context, ref types.ManagedObjectReference) {
	if pc, ok := ctx.Session.Get(ref).(*propertyCollector); ok {
		e.mu.Lock()
		if pc.w == nil {
			pc.w = e.w
		}
		e.mu.Unlock()
	}
}

func (pc *propertyCollector) CreatePropertyCollector(ctx *simulator.Context, _ *types.CreatePropertyCollector) soap.HasFault {
	made := &propertyCollector{w: pc.w}
	made.Self.Type = "PropertyCollector" // vcsim names a moref's type after the Go type
	return &methods.CreatePropertyCollectorBody{Res: &types.CreatePropertyCollectorResponse{
		Returnval: ctx.Session.Put(made).Reference()}}
}

func (pc *propertyCollector) DestroyPropertyCollector(ctx *simulator.Context, c *types.DestroyPropertyCollector) soap.HasFault {
	pc.cancelWaits()
	pc.mu.Lock()
	filters := pc.filters
	pc.filters, pc.Filter = nil, nil
	pc.mu.Unlock()
	for _, f := range filters {
		ctx.Session.Remove(ctx, f.Self)
	}
	key := ctx.Session.Key
	pc.w.pager.drop(func(r *pendingResult) bool { return r.session != key || r.collector != c.This })
	pc.w.ext.untrack(pc)
	ctx.Session.Remove(ctx, c.This)
	return &methods.DestroyPropertyCollectorBody{Res: &types.DestroyPropertyCollectorResponse{}}
}

// -- retrieval ----------------------------------------------------------------

func (pc *propertyCollector) RetrievePropertiesEx(ctx *simulator.Context, r *types.RetrievePropertiesEx) soap.HasFault {
	if r.Options.MaxObjects < 0 {
		return &methods.RetrievePropertiesExBody{Fault_: simulator.Fault("maxObjects must be positive",
			&types.InvalidArgument{InvalidProperty: "maxObjects"})}
	}
	specs, fault := traverse(ctx, r.SpecSet)
	if fault != nil {
		return &methods.RetrievePropertiesExBody{Fault_: simulator.Fault("", fault)}
	}
	size := pc.w.pager.pageSize()
	if m := r.Options.MaxObjects; m > 0 && m < size {
		size = m
	}
	all := *r
	all.SpecSet = specs
	all.Options.MaxObjects = 0 // vcsim returns everything; fakevc pages it
	res := pc.PropertyCollector.RetrievePropertiesEx(ctx, &all)
	if body, ok := res.(*methods.RetrievePropertiesExBody); ok && body.Res != nil && body.Res.Returnval != nil {
		rv := body.Res.Returnval
		sendUsage(ctx, rv.Objects)
		rv.Objects, rv.Token = pc.w.pager.page(ctx.Session.Key, pc.Self, rv.Objects, size)
	}
	return res
}

// RetrieveProperties answers everything at once, as vCenter does.
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
	p := pc.w.pager.take(r.Token, ctx.Session.Key, pc.Self)
	if p == nil {
		return &methods.ContinueRetrievePropertiesExBody{Fault_: simulator.Fault(
			"the token is not one this collector returned in this session, or it was used already",
			&types.InvalidProperty{Name: "token"})}
	}
	var res types.RetrieveResult
	res.Objects, res.Token = pc.w.pager.page(p.session, p.collector, p.objects, p.size)
	return &methods.ContinueRetrievePropertiesExBody{Res: &types.ContinueRetrievePropertiesExResponse{Returnval: res}}
}

// CancelRetrievePropertiesEx discards the rest of a paged result (vcsim
// lacks the method).
func (pc *propertyCollector) CancelRetrievePropertiesEx(ctx *simulator.Context, r *types.CancelRetrievePropertiesEx) soap.HasFault {
	if pc.w.pager.take(r.Token, ctx.Session.Key, pc.Self) == nil {
		return &methods.CancelRetrievePropertiesExBody{Fault_: simulator.Fault(
			"the token is not one this collector returned in this session, or it was used already",
			&types.InvalidProperty{Name: "token"})}
	}
	return &methods.CancelRetrievePropertiesExBody{Res: &types.CancelRetrievePropertiesExResponse{}}
}

// -- filters ------------------------------------------------------------------

func (pc *propertyCollector) CreateFilter(ctx *simulator.Context, c *types.CreateFilter) soap.HasFault {
	if fault := checkSpec(c.Spec); fault != nil {
		return &methods.CreateFilterBody{Fault_: simulator.Fault("", fault)}
	}
	f := &propertyFilter{pc: pc, refs: map[types.ManagedObjectReference]bool{}}
	f.Spec, f.PartialUpdates = c.Spec, c.PartialUpdates
	f.Self.Type = "PropertyFilter" // vcsim names a moref's type after the Go type
	ref := ctx.Session.Put(f).Reference()
	pc.mu.Lock()
	pc.filters = append(pc.filters, f)
	pc.Filter = append(pc.Filter, ref)
	pc.mu.Unlock()
	pc.w.ext.track(pc, ctx.Session.Key)
	pc.touch()
	return &methods.CreateFilterBody{Res: &types.CreateFilterResponse{Returnval: ref}}
}

func (f *propertyFilter) DestroyPropertyFilter(ctx *simulator.Context, c *types.DestroyPropertyFilter) soap.HasFault {
	pc := f.pc
	pc.mu.Lock()
	pc.filters = slices.DeleteFunc(pc.filters, func(x *propertyFilter) bool { return x == f })
	pc.Filter = slices.DeleteFunc(pc.Filter, func(r types.ManagedObjectReference) bool { return r == c.This })
	pc.mu.Unlock()
	ctx.Session.Remove(ctx, c.This)
	return &methods.DestroyPropertyFilterBody{Res: &types.DestroyPropertyFilterResponse{}}
}

// -- changes --------------------------------------------------------------------

// The registry's changes reach a collector through extensions (not as a
// registry handler of its own: vcsim keys those by moref, which every
// session's instance of the singleton shares).

func (pc *propertyCollector) PutObject(_ *simulator.Context, obj mo.Reference) {
	pc.note(obj.Reference(), nil)
}

func (pc *propertyCollector) UpdateObject(_ *simulator.Context, obj mo.Reference, changes []types.PropertyChange) {
	pc.note(obj.Reference(), changes)
}

func (pc *propertyCollector) RemoveObject(_ *simulator.Context, ref types.ManagedObjectReference) {
	pc.note(ref, nil)
}

// note records that ref changed (which properties, when known) and wakes a
// waiting WaitForUpdatesEx.
func (pc *propertyCollector) note(ref types.ManagedObjectReference, changes []types.PropertyChange) {
	pc.mu.Lock()
	if len(pc.filters) == 0 {
		pc.mu.Unlock()
		return
	}
	pc.dirty = true
	if len(changes) == 0 {
		pc.structural = true
	} else {
		if pc.changed == nil {
			pc.changed = map[types.ManagedObjectReference]map[string]bool{}
		}
		names := pc.changed[ref]
		if names == nil {
			names = map[string]bool{}
			pc.changed[ref] = names
		}
		for _, c := range changes {
			names[c.Name] = true
		}
	}
	sig := pc.signalLocked()
	pc.mu.Unlock()
	select {
	case sig <- struct{}{}:
	default:
	}
}

// touch makes the next wait compute (a filter came).
func (pc *propertyCollector) touch() {
	pc.mu.Lock()
	pc.dirty, pc.structural = true, true
	sig := pc.signalLocked()
	pc.mu.Unlock()
	select {
	case sig <- struct{}{}:
	default:
	}
}

func (pc *propertyCollector) signalLocked() chan struct{} {
	if pc.signal == nil {
		pc.signal = make(chan struct{}, 1)
	}
	return pc.signal
}

func (pc *propertyCollector) canceledLocked() chan struct{} {
	if pc.canceled == nil {
		pc.canceled = make(chan struct{})
	}
	return pc.canceled
}

// cancelWaits ends the waits in progress with RequestCanceled.
func (pc *propertyCollector) cancelWaits() {
	pc.mu.Lock()
	if pc.canceled != nil {
		close(pc.canceled)
		pc.canceled = nil
	}
	pc.mu.Unlock()
}

func (pc *propertyCollector) CancelWaitForUpdates(*types.CancelWaitForUpdates) soap.HasFault {
	pc.cancelWaits()
	return &methods.CancelWaitForUpdatesBody{Res: &types.CancelWaitForUpdatesResponse{}}
}

// -- updates --------------------------------------------------------------------

// maxObjectUpdates is vCenter's own limit on the object updates of one
// answer ("PropertyCollector policy may still limit the total count").
const maxObjectUpdates = 100

// batchDelay lets changes that come together go out together.
const batchDelay = 20 * time.Millisecond

func (pc *propertyCollector) WaitForUpdatesEx(ctx *simulator.Context, r *types.WaitForUpdatesEx) soap.HasFault {
	body := &methods.WaitForUpdatesExBody{}
	var wait *int32
	limit := maxObjectUpdates
	if r.Options != nil {
		wait = r.Options.MaxWaitSeconds
		if m := r.Options.MaxObjectUpdates; m > 0 && m < maxObjectUpdates {
			limit = int(m)
		}
		if (wait != nil && *wait < 0) || r.Options.MaxObjectUpdates < 0 {
			body.Fault_ = simulator.Fault("maxWaitSeconds and maxObjectUpdates must not be negative",
				&types.InvalidArgument{InvalidProperty: "options"})
			return body
		}
	}
	set, fault := pc.wait(ctx, r.Version, wait, limit)
	if fault != nil {
		body.Fault_ = simulator.Fault("", fault)
		return body
	}
	body.Res = &types.WaitForUpdatesExResponse{Returnval: set}
	return body
}

// WaitForUpdates is the deprecated form: it waits for as long as it takes.
func (pc *propertyCollector) WaitForUpdates(ctx *simulator.Context, r *types.WaitForUpdates) soap.HasFault {
	body := &methods.WaitForUpdatesBody{}
	set, fault := pc.wait(ctx, r.Version, nil, maxObjectUpdates)
	if fault != nil {
		body.Fault_ = simulator.Fault("", fault)
		return body
	}
	body.Res = &types.WaitForUpdatesResponse{Returnval: *set}
	return body
}

// CheckForUpdates is the deprecated form that does not wait.
func (pc *propertyCollector) CheckForUpdates(ctx *simulator.Context, r *types.CheckForUpdates) soap.HasFault {
	body := &methods.CheckForUpdatesBody{}
	set, fault := pc.wait(ctx, r.Version, types.NewInt32(0), maxObjectUpdates)
	if fault != nil {
		body.Fault_ = simulator.Fault("", fault)
		return body
	}
	body.Res = &types.CheckForUpdatesResponse{Returnval: set}
	return body
}

// wait answers a WaitForUpdatesEx: version "" is the whole state of every
// filter; another version, what changed since. maxWait nil waits until
// there is something, 0 computes once, n waits up to n seconds; nil is
// returned when nothing came.
func (pc *propertyCollector) wait(ctx *simulator.Context, version string, maxWait *int32, limit int) (*types.UpdateSet, types.BaseMethodFault) {
	pc.w.ext.track(pc, ctx.Session.Key) // so a reset ends the wait
	pc.mu.Lock()
	canceled := pc.canceledLocked()
	pc.mu.Unlock()
	var deadline <-chan time.Time
	if maxWait != nil && *maxWait > 0 {
		t := time.NewTimer(time.Duration(*maxWait) * time.Second)
		defer t.Stop()
		deadline = t.C
	}
	for {
		set, fault := pc.next(ctx, version == "", limit)
		if fault != nil || set != nil {
			return set, fault
		}
		version = "-" // the initial state was sent: from here, only changes
		if maxWait != nil && *maxWait == 0 {
			return nil, nil
		}
		pc.mu.Lock()
		sig := pc.signalLocked()
		pc.mu.Unlock()
		select {
		case <-canceled:
			return nil, new(types.RequestCanceled)
		case <-deadline:
			return nil, nil
		case <-sig:
		}
		select { // let changes that come together go out together
		case <-canceled:
			return nil, new(types.RequestCanceled)
		case <-deadline:
		case <-time.After(batchDelay):
		}
	}
}

// next is the next answer: the rest of a truncated one, else the changes
// since the last (the whole state when initial); nil when there are none
// (never nil when initial).
func (pc *propertyCollector) next(ctx *simulator.Context, initial bool, limit int) (*types.UpdateSet, types.BaseMethodFault) {
	pc.compute.Lock()
	defer pc.compute.Unlock()
	pc.mu.Lock()
	if initial {
		pc.pending = nil
	}
	if pc.pending != nil {
		set := pc.pending
		pc.pending = nil
		pc.mu.Unlock()
		return pc.page(set, limit), nil
	}
	changed, dirty, structural := pc.changed, pc.dirty, pc.structural
	pc.changed, pc.dirty, pc.structural = nil, false, false
	filters := slices.Clone(pc.filters)
	pc.mu.Unlock()

	set := &types.UpdateSet{}
	if dirty || initial {
		for _, f := range filters {
			fu, fault := f.updates(ctx, initial, structural, changed)
			if fault != nil {
				return nil, fault
			}
			if len(fu.ObjectSet) > 0 {
				set.FilterSet = append(set.FilterSet, fu)
			}
		}
	}
	if len(set.FilterSet) == 0 && !initial {
		return nil, nil
	}
	return pc.page(set, limit), nil
}

// page numbers an answer and cuts it at limit object updates, keeping the
// rest for the next call.
func (pc *propertyCollector) page(set *types.UpdateSet, limit int) *types.UpdateSet {
	n := 0
	for i := range set.FilterSet {
		objs := set.FilterSet[i].ObjectSet
		if n+len(objs) <= limit {
			n += len(objs)
			continue
		}
		keep := limit - n
		rest := &types.UpdateSet{FilterSet: []types.PropertyFilterUpdate{{Filter: set.FilterSet[i].Filter, ObjectSet: objs[keep:]}}}
		rest.FilterSet = append(rest.FilterSet, set.FilterSet[i+1:]...)
		set.FilterSet[i].ObjectSet = objs[:keep]
		set.FilterSet = set.FilterSet[:i+1]
		if keep == 0 {
			set.FilterSet = set.FilterSet[:i]
		}
		set.Truncated = types.NewBool(true)
		pc.mu.Lock()
		pc.pending = rest
		pc.mu.Unlock()
		break
	}
	pc.mu.Lock()
	pc.version++
	set.Version = strconv.FormatInt(pc.version, 10)
	pc.mu.Unlock()
	return set
}

// updates is what the client of this filter has not been told: objects that
// came into reach (enter, with every property the spec names), changed
// properties of the others (modify, values read now), and objects that went
// out of reach (leave). initial starts over: everything in reach enters.
// Membership is computed again (a traversal of the inventory, the costly
// part at thousands of objects) unless only properties changed and no
// traversal follows any of them: then what is in reach is what was.
func (f *propertyFilter) updates(ctx *simulator.Context, initial, structural bool,
	changed map[types.ManagedObjectReference]map[string]bool) (types.PropertyFilterUpdate, types.BaseMethodFault) {
	fu := types.PropertyFilterUpdate{Filter: f.Self}
	if initial {
		f.refs, f.sent = map[types.ManagedObjectReference]bool{}, nil
	}
	var reach []types.ManagedObjectReference
	if !initial && !structural && f.refs != nil && !traverses(f.Spec, changed) {
		reach = slices.Clone(f.sent)
	} else {
		var fault types.BaseMethodFault
		if reach, fault = members(ctx, f.Spec); fault != nil {
			return fu, fault
		}
	}
	inReach := make(map[types.ManagedObjectReference]bool, len(reach))
	var enter, modify []types.ManagedObjectReference
	for _, ref := range reach {
		inReach[ref] = true
		switch {
		case !f.refs[ref]:
			enter = append(enter, ref)
		case len(changed[ref]) > 0:
			modify = append(modify, ref)
		}
	}
	if len(enter) > 0 {
		for _, o := range f.read(ctx, enter, nil) {
			u := types.ObjectUpdate{Obj: o.Obj, Kind: types.ObjectUpdateKindEnter}
			for _, p := range o.PropSet {
				u.ChangeSet = append(u.ChangeSet, types.PropertyChange{Name: p.Name, Op: types.PropertyChangeOpAssign, Val: p.Val})
			}
			fu.ObjectSet = append(fu.ObjectSet, u)
			f.refs[o.Obj] = true
			f.sent = append(f.sent, o.Obj)
		}
	}
	for _, ref := range modify {
		paths := f.affected(ctx, ref, changed[ref])
		if len(paths) == 0 {
			continue
		}
		for _, o := range f.read(ctx, []types.ManagedObjectReference{ref}, paths) {
			u := types.ObjectUpdate{Obj: o.Obj, Kind: types.ObjectUpdateKindModify}
			got := map[string]any{}
			for _, p := range o.PropSet {
				got[p.Name] = p.Val
			}
			missing := map[string]bool{}
			for _, m := range o.MissingSet {
				missing[m.Path] = true
			}
			for _, path := range paths {
				if !missing[path] { // an unset value is sent unset
					u.ChangeSet = append(u.ChangeSet, types.PropertyChange{Name: path, Op: types.PropertyChangeOpAssign, Val: got[path]})
				}
			}
			if len(u.ChangeSet) > 0 {
				fu.ObjectSet = append(fu.ObjectSet, u)
			}
		}
	}
	kept := f.sent[:0]
	for _, ref := range f.sent {
		if inReach[ref] && f.refs[ref] {
			kept = append(kept, ref)
			continue
		}
		if f.refs[ref] {
			delete(f.refs, ref)
			fu.ObjectSet = append(fu.ObjectSet, types.ObjectUpdate{Obj: ref, Kind: types.ObjectUpdateKindLeave})
		}
	}
	f.sent = kept
	for i := range fu.ObjectSet {
		u := &fu.ObjectSet[i]
		for k := range u.ChangeSet {
			u.ChangeSet[k].Val = usageValue(ctx, u.Obj, u.ChangeSet[k].Val)
		}
	}
	return fu, nil
}

// read reads the spec's properties (or only paths) of objects, through
// vcsim; objects gone meanwhile are left out.
func (f *propertyFilter) read(ctx *simulator.Context, refs []types.ManagedObjectReference, paths []string) []types.ObjectContent {
	spec := types.PropertyFilterSpec{PropSet: f.Spec.PropSet, ReportMissingObjectsInResults: types.NewBool(true)}
	if paths != nil {
		spec.PropSet = []types.PropertySpec{{Type: refs[0].Type, PathSet: paths}}
	}
	for _, ref := range refs {
		spec.ObjectSet = append(spec.ObjectSet, types.ObjectSpec{Obj: ref, Skip: types.NewBool(false)})
	}
	res := f.pc.PropertyCollector.RetrievePropertiesEx(ctx, &types.RetrievePropertiesEx{SpecSet: []types.PropertyFilterSpec{spec}})
	b, ok := res.(*methods.RetrievePropertiesExBody)
	if !ok || b.Res == nil || b.Res.Returnval == nil {
		return nil
	}
	return b.Res.Returnval.Objects
}

// affected are the paths of the spec, for ref's type, that the changed
// property names touch: the same property, one inside it or one it is
// inside. With all=true, the changed top-level properties.
func (f *propertyFilter) affected(ctx *simulator.Context, ref types.ManagedObjectReference, names map[string]bool) []string {
	obj := lookup(ctx, ref)
	if obj == nil {
		return nil
	}
	var out []string
	add := func(p string) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, ps := range f.Spec.PropSet {
		if ps.Type != ref.Type && !ofType(obj, ps.Type) {
			continue
		}
		if isTrue(ps.All) {
			for n := range names {
				if top := strings.FieldsFunc(n, func(r rune) bool { return r == '.' || r == '[' }); len(top) > 0 {
					add(top[0])
				}
			}
			continue
		}
		for _, p := range ps.PathSet {
			for n := range names {
				if related(p, n) {
					add(p)
					break
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// traverses tells whether a traversal of the spec follows a property that
// changed (so what the filter reaches may differ).
func traverses(spec types.PropertyFilterSpec, changed map[types.ManagedObjectReference]map[string]bool) bool {
	var paths []string
	var walk func([]types.BaseSelectionSpec)
	walk = func(sel []types.BaseSelectionSpec) {
		for _, s := range sel {
			if ts, ok := s.(*types.TraversalSpec); ok && ts != nil {
				paths = append(paths, ts.Path)
				walk(ts.SelectSet)
			}
		}
	}
	for _, o := range spec.ObjectSet {
		walk(o.SelectSet)
	}
	for _, names := range changed {
		for n := range names {
			for _, p := range paths {
				if related(p, n) {
					return true
				}
			}
		}
	}
	return false
}

// related tells whether two property paths name the same property or one
// lies inside the other ("summary" and "summary.quickStats.overallCpuUsage";
// "config.hardware.device[4000]" and "config.hardware.device").
func related(a, b string) bool {
	a, _, _ = strings.Cut(a, "[")
	b, _, _ = strings.Cut(b, "[")
	return a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(b, a+".")
}

// -- traversal ----------------------------------------------------------------

func isTrue(b *bool) bool { return b != nil && *b }

// checkSpec refuses a filter spec that names a selection spec it does not
// define (as vCenter does, whatever the inventory).
func checkSpec(spec types.PropertyFilterSpec) types.BaseMethodFault {
	named := map[string]bool{}
	var uses []string
	var walk func([]types.BaseSelectionSpec, int)
	walk = func(sel []types.BaseSelectionSpec, depth int) {
		if depth > 64 {
			return
		}
		for _, s := range sel {
			if s == nil {
				continue
			}
			if ts, ok := s.(*types.TraversalSpec); ok {
				if ts.Name != "" {
					named[ts.Name] = true
				}
				walk(ts.SelectSet, depth+1)
			} else {
				uses = append(uses, s.GetSelectionSpec().Name)
			}
		}
	}
	for _, o := range spec.ObjectSet {
		walk(o.SelectSet, 0)
	}
	for _, n := range uses {
		if !named[n] {
			return &types.InvalidArgument{InvalidProperty: "selectSet: no TraversalSpec named " + n}
		}
	}
	return nil
}

// traverse replaces each filter spec's selection specs by the objects they
// reach, as vCenter selects them (see reach). A spec without selection specs
// is left to vcsim as it is.
func traverse(ctx *simulator.Context, specs []types.PropertyFilterSpec) ([]types.PropertyFilterSpec, types.BaseMethodFault) {
	out := make([]types.PropertyFilterSpec, len(specs))
	for i, spec := range specs {
		out[i] = spec
		if !slices.ContainsFunc(spec.ObjectSet, func(o types.ObjectSpec) bool { return len(o.SelectSet) > 0 }) {
			continue
		}
		if fault := checkSpec(spec); fault != nil {
			return nil, fault
		}
		refs, fault := reach(ctx, spec)
		if fault != nil {
			return nil, fault
		}
		out[i].ObjectSet = nil
		for _, ref := range refs {
			out[i].ObjectSet = append(out[i].ObjectSet, types.ObjectSpec{Obj: ref, Skip: types.NewBool(false)})
		}
		// An object reached may be gone by the time vcsim reads it: it is
		// left out, not a fault (the roots were checked).
		out[i].ReportMissingObjectsInResults = types.NewBool(true)
	}
	return out, nil
}

// members are the objects a filter spec selects whose type the spec reads:
// those a filter reports. A root that is gone is out of reach (it leaves
// the filter), not a fault of every later wait.
func members(ctx *simulator.Context, spec types.PropertyFilterSpec) ([]types.ManagedObjectReference, types.BaseMethodFault) {
	spec.ReportMissingObjectsInResults = types.NewBool(true)
	refs, fault := reach(ctx, spec)
	if fault != nil {
		return nil, fault
	}
	out := refs[:0]
	for _, ref := range refs {
		obj := lookup(ctx, ref)
		if obj == nil {
			continue
		}
		if slices.ContainsFunc(spec.PropSet, func(p types.PropertySpec) bool { return p.Type == ref.Type || ofType(obj, p.Type) }) {
			out = append(out, ref)
		}
	}
	return out, nil
}

// reach is the objects a filter spec selects, in order: a root unless its
// spec says skip, and what the traversal specs lead to. A TraversalSpec
// applies to objects of its type or a subtype; an object is reported unless
// every spec that reached it says skip; each object is followed once per
// spec, without recursion. A missing root is a fault unless the spec asks
// for missing objects to be reported (then it is left out).
func reach(ctx *simulator.Context, spec types.PropertyFilterSpec) ([]types.ManagedObjectReference, types.BaseMethodFault) {
	named := map[string]*types.TraversalSpec{}
	var name func([]types.BaseSelectionSpec)
	name = func(sel []types.BaseSelectionSpec) {
		for _, s := range sel {
			if ts, ok := s.(*types.TraversalSpec); ok && ts != nil {
				if ts.Name != "" && named[ts.Name] == nil {
					named[ts.Name] = ts
				} else if ts.Name != "" {
					continue // seen: its selections were named then
				}
				name(ts.SelectSet)
			}
		}
	}
	for _, o := range spec.ObjectSet {
		name(o.SelectSet)
	}

	var objects []types.ManagedObjectReference
	reported := map[types.ManagedObjectReference]bool{}
	report := func(ref types.ManagedObjectReference) {
		if !reported[ref] {
			reported[ref] = true
			objects = append(objects, ref)
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
			if isTrue(spec.ReportMissingObjectsInResults) {
				continue
			}
			return nil, &types.ManagedObjectNotFound{Obj: o.Obj}
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
				if s == nil {
					continue
				}
				ts, ok := s.(*types.TraversalSpec)
				if !ok || ts == nil {
					ts = named[s.GetSelectionSpec().Name]
					if ts == nil {
						return nil, &types.InvalidArgument{InvalidProperty: "selectSet: no TraversalSpec named " + s.GetSelectionSpec().Name}
					}
				}
				if !ofType(obj, ts.Type) || visited[visit{cur.ref, ts}] {
					continue
				}
				visited[visit{cur.ref, ts}] = true
				for _, ref := range refsAt(ctx, obj, ts.Path) {
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
	return objects, nil
}

// lookup finds an object in the caller's session (views, collectors) or the
// inventory.
func lookup(ctx *simulator.Context, ref types.ManagedObjectReference) mo.Reference {
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

// refsAt reads the references at a property path of an object, under its
// lock (a session's view is locked by the same key its updates take).
func refsAt(ctx *simulator.Context, obj mo.Reference, path string) []types.ManagedObjectReference {
	var out []types.ManagedObjectReference
	ctx.WithLock(obj, func() {
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
			out = slices.Clone(x)
		}
	})
	return out
}

// -- a connected host's usage, 0 included ---------------------------------------

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
	ctx.WithLock(h, func() { connected = h.Runtime.ConnectionState == types.HostSystemConnectionStateConnected })
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
