// Tests of fakevc's PropertyCollector updates: a filter's membership follows
// the inventory (also for looping traversal specs), versions, truncation,
// cancellation, and specs refused at creation.
package main

import (
	"slices"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

// loopingSpecs is oslo.vmware's recursive traversal: every spec may select
// every other, so a spec selects itself again.
func loopingSpecs() []types.BaseSelectionSpec {
	all := []string{"rp_rp", "rp_vm", "vm_rp", "cr_rp", "cr_host", "dc_hf", "dc_vmf", "f_child"}
	ts := func(name, typ, path string) *types.TraversalSpec {
		s := &types.TraversalSpec{SelectionSpec: types.SelectionSpec{Name: name}, Type: typ, Path: path, Skip: types.NewBool(false)}
		for _, n := range all {
			s.SelectSet = append(s.SelectSet, &types.SelectionSpec{Name: n})
		}
		return s
	}
	return []types.BaseSelectionSpec{
		ts("rp_rp", "ResourcePool", "resourcePool"), ts("rp_vm", "ResourcePool", "vm"),
		ts("vm_rp", "VirtualMachine", "resourcePool"), ts("cr_rp", "ComputeResource", "resourcePool"),
		ts("cr_host", "ComputeResource", "host"), ts("dc_hf", "Datacenter", "hostFolder"),
		ts("dc_vmf", "Datacenter", "vmFolder"), ts("f_child", "Folder", "childEntity"),
	}
}

// watcher is a collector of its own with one filter, and the state its
// updates describe (object -> name).
type watcher struct {
	t       *testing.T
	c       *govmomi.Client
	pc      types.ManagedObjectReference
	filter  types.ManagedObjectReference
	version string
	names   map[types.ManagedObjectReference]string
	kinds   []types.ObjectUpdateKind // of the last answer, in order
}

func newWatcher(t *testing.T, c *govmomi.Client, spec types.PropertyFilterSpec) *watcher {
	t.Helper()
	res, err := methods.CreatePropertyCollector(bg, c.Client, &types.CreatePropertyCollector{This: c.ServiceContent.PropertyCollector})
	if err != nil {
		t.Fatal(err)
	}
	f, err := methods.CreateFilter(bg, c.Client, &types.CreateFilter{This: res.Returnval, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	return &watcher{t: t, c: c, pc: res.Returnval, filter: f.Returnval, names: map[types.ManagedObjectReference]string{}}
}

// next applies one answer (waiting up to secs); false when none came.
func (w *watcher) next(secs int32) bool {
	w.t.Helper()
	res, err := methods.WaitForUpdatesEx(bg, w.c.Client, &types.WaitForUpdatesEx{This: w.pc, Version: w.version,
		Options: &types.WaitOptions{MaxWaitSeconds: types.NewInt32(secs)}})
	if err != nil {
		w.t.Fatal(err)
	}
	if res.Returnval == nil {
		return false
	}
	set := res.Returnval
	if set.Version == "" || set.Version == w.version {
		w.t.Errorf("version %q after %q", set.Version, w.version)
	}
	w.version = set.Version
	w.kinds = nil
	for _, fu := range set.FilterSet {
		if fu.Filter != w.filter {
			w.t.Errorf("an update of filter %s, not %s", fu.Filter, w.filter)
		}
		for _, u := range fu.ObjectSet {
			w.kinds = append(w.kinds, u.Kind)
			switch u.Kind {
			case types.ObjectUpdateKindLeave:
				if _, ok := w.names[u.Obj]; !ok {
					w.t.Errorf("%s left without having entered", u.Obj)
				}
				delete(w.names, u.Obj)
			case types.ObjectUpdateKindEnter, types.ObjectUpdateKindModify:
				if _, ok := w.names[u.Obj]; ok == (u.Kind == types.ObjectUpdateKindEnter) {
					w.t.Errorf("%s %s, known before: %v", u.Obj, u.Kind, ok)
				}
				w.names[u.Obj] = ""
				for _, ch := range u.ChangeSet {
					if ch.Name == "name" {
						w.names[u.Obj] = ch.Val.(string)
					}
				}
			}
		}
	}
	return true
}

// until applies answers until cond holds (or fails the test after 20 s).
func (w *watcher) until(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: never seen; state %v", what, w.names)
		}
		w.next(5)
	}
}

func (w *watcher) has(name string) bool {
	for _, n := range w.names {
		if n == name {
			return true
		}
	}
	return false
}

// A filter with oslo.vmware's looping traversal answers, and its membership
// follows the inventory: a VM made after the filter enters, a destroyed one
// leaves.
func TestLoopingFilterFollowsTheInventory(t *testing.T) {
	fv, c := serve(t, testTopology())
	w := newWatcher(t, c, types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{Obj: c.ServiceContent.RootFolder, SelectSet: loopingSpecs()}},
		PropSet:   []types.PropertySpec{{Type: "VirtualMachine", PathSet: []string{"name"}}, {Type: "HostSystem", PathSet: []string{"name"}}}})
	if !w.next(0) {
		t.Fatal("no initial state")
	}
	if len(w.names) != 6 || !w.has("SA_H0") || !w.has("C0_H3") {
		t.Fatalf("initial state: %v", w.names)
	}
	vm, f := createVM(t, fv, c, "C0", nil, vmSpec("late", "shared", 1, 256))
	if f != nil {
		t.Fatal(faultText(f))
	}
	w.until("the new VM entering", func() bool { return w.has("late") })
	tasks{t}.must(object.NewVirtualMachine(c.Client, vm).Destroy(bg))
	w.until("the destroyed VM leaving", func() bool { return !w.has("late") })
	if w.next(0) {
		t.Errorf("an answer with nothing changed: %v", w.kinds)
	}
}

// An object that goes out of a filter's reach without being deleted leaves
// it (vcsim sent leave only for deleted objects), and enters the filter
// whose reach it entered.
func TestMovedHostLeavesAndEnters(t *testing.T) {
	fv, c := serve(t, testTopology())
	spec := func(cluster string) types.PropertyFilterSpec {
		return types.PropertyFilterSpec{
			ObjectSet: []types.ObjectSpec{{Obj: ref(t, fv, "ClusterComputeResource", cluster), Skip: types.NewBool(true),
				SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{Type: "ComputeResource", Path: "host"}}}},
			PropSet: []types.PropertySpec{{Type: "HostSystem", PathSet: []string{"name"}}}}
	}
	from, to := newWatcher(t, c, spec("C0")), newWatcher(t, c, spec("C1"))
	from.next(0)
	to.next(0)
	if len(from.names) != 4 || len(to.names) != 1 {
		t.Fatalf("initial: C0 %v, C1 %v", from.names, to.names)
	}
	h2 := hostRef(t, fv, "C0_H2") // in maintenance: it may move
	tasks{t}.must(object.NewClusterComputeResource(c.Client, ref(t, fv, "ClusterComputeResource", "C1")).
		MoveInto(bg, object.NewHostSystem(c.Client, h2)))
	from.until("C0_H2 leaving C0", func() bool { return !from.has("C0_H2") })
	if !slices.Contains(from.kinds, types.ObjectUpdateKindLeave) {
		t.Errorf("C0_H2 went without a leave: %v", from.kinds)
	}
	to.until("C0_H2 entering C1", func() bool { return to.has("C0_H2") })
}

// Changed properties of a member are sent as modify, with the value read
// now, for the paths the filter names (a leaf inside a changed property).
func TestModifyCarriesTheFiltersPaths(t *testing.T) {
	fv, c := serve(t, testTopology())
	h1 := hostRef(t, fv, "C0_H1")
	w := newWatcher(t, c, types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{Obj: h1}},
		PropSet:   []types.PropertySpec{{Type: "HostSystem", PathSet: []string{"name", "runtime.inMaintenanceMode"}}}})
	w.next(0)
	tasks{t}.must(object.NewHostSystem(c.Client, h1).EnterMaintenanceMode(bg, 0, false, nil))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		res, err := methods.WaitForUpdatesEx(bg, c.Client, &types.WaitForUpdatesEx{This: w.pc, Version: w.version,
			Options: &types.WaitOptions{MaxWaitSeconds: types.NewInt32(5)}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Returnval == nil {
			continue
		}
		w.version = res.Returnval.Version
		for _, fu := range res.Returnval.FilterSet {
			for _, u := range fu.ObjectSet {
				for _, ch := range u.ChangeSet {
					if u.Kind != types.ObjectUpdateKindModify || (ch.Name != "runtime.inMaintenanceMode" && ch.Name != "name") {
						t.Errorf("%s %s %s: not a path of the filter", u.Obj, u.Kind, ch.Name)
					}
					if ch.Name == "runtime.inMaintenanceMode" && ch.Val == true {
						return
					}
				}
			}
		}
	}
	t.Fatal("runtime.inMaintenanceMode=true never came")
}

// An initial answer larger than maxObjectUpdates is truncated and continued
// with the version it returned; versions differ from answer to answer.
func TestUpdatesAreTruncated(t *testing.T) {
	_, c := serve(t, testTopology())
	w := newWatcher(t, c, types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{Obj: c.ServiceContent.RootFolder, SelectSet: loopingSpecs()}},
		PropSet:   []types.PropertySpec{{Type: "HostSystem", PathSet: []string{"name"}}}})
	seen := 0
	versions := map[string]bool{}
	version := ""
	for {
		res, err := methods.WaitForUpdatesEx(bg, c.Client, &types.WaitForUpdatesEx{This: w.pc, Version: version,
			Options: &types.WaitOptions{MaxWaitSeconds: types.NewInt32(0), MaxObjectUpdates: 4}})
		if err != nil {
			t.Fatal(err)
		}
		set := res.Returnval
		n := 0
		for _, fu := range set.FilterSet {
			n += len(fu.ObjectSet)
		}
		if n > 4 {
			t.Errorf("%d object updates, maxObjectUpdates 4", n)
		}
		seen += n
		if versions[set.Version] {
			t.Errorf("version %q twice", set.Version)
		}
		versions[set.Version], version = true, set.Version
		if !isTrue(set.Truncated) {
			break
		}
	}
	if seen != 6 {
		t.Errorf("%d hosts in all, want 6", seen)
	}
}

func TestCancelWaitForUpdates(t *testing.T) {
	_, c := serve(t, testTopology())
	w := newWatcher(t, c, types.PropertyFilterSpec{ObjectSet: []types.ObjectSpec{{Obj: c.ServiceContent.RootFolder}},
		PropSet: []types.PropertySpec{{Type: "Folder", PathSet: []string{"name"}}}})
	w.next(0)
	done := make(chan error, 1)
	go func() {
		_, err := methods.WaitForUpdatesEx(bg, c.Client, &types.WaitForUpdatesEx{This: w.pc, Version: w.version})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // it is waiting
	if _, err := methods.CancelWaitForUpdates(bg, c.Client, &types.CancelWaitForUpdates{This: w.pc}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !isFault(err, "RequestCanceled") {
			t.Errorf("a cancelled wait: %v, want RequestCanceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("CancelWaitForUpdates did not end the wait")
	}
	// The collector goes on serving.
	if _, err := methods.WaitForUpdatesEx(bg, c.Client, &types.WaitForUpdatesEx{This: w.pc, Version: w.version,
		Options: &types.WaitOptions{MaxWaitSeconds: types.NewInt32(0)}}); err != nil {
		t.Errorf("after a cancel: %v", err)
	}
}

// A spec that selects a name no TraversalSpec has is refused when the filter
// is made, whatever the inventory (vcsim accepted it and failed later).
func TestFilterNamingAnUnknownSpecIsRefused(t *testing.T) {
	_, c := serve(t, testTopology())
	spec := types.PropertyFilterSpec{ObjectSet: []types.ObjectSpec{{Obj: c.ServiceContent.RootFolder,
		SelectSet: []types.BaseSelectionSpec{&types.SelectionSpec{Name: "nowhere"}}}},
		PropSet: []types.PropertySpec{{Type: "Folder", PathSet: []string{"name"}}}}
	_, err := methods.CreateFilter(bg, c.Client, &types.CreateFilter{This: c.ServiceContent.PropertyCollector, Spec: spec})
	if !isFault(err, "InvalidArgument") {
		t.Errorf("CreateFilter: %v, want InvalidArgument", err)
	}
	_, err = methods.RetrievePropertiesEx(bg, c.Client, &types.RetrievePropertiesEx{This: c.ServiceContent.PropertyCollector,
		SpecSet: []types.PropertyFilterSpec{spec}})
	if !isFault(err, "InvalidArgument") {
		t.Errorf("RetrievePropertiesEx: %v, want InvalidArgument", err)
	}
}

// Collectors and filters have vim's type names in their morefs.
func TestCollectorAndFilterTypes(t *testing.T) {
	_, c := serve(t, testTopology())
	w := newWatcher(t, c, types.PropertyFilterSpec{ObjectSet: []types.ObjectSpec{{Obj: c.ServiceContent.RootFolder}},
		PropSet: []types.PropertySpec{{Type: "Folder", PathSet: []string{"name"}}}})
	if w.pc.Type != "PropertyCollector" || w.filter.Type != "PropertyFilter" {
		t.Errorf("collector %s, filter %s", w.pc, w.filter)
	}
}

// A filter whose root object goes away sends leave for it, and later waits
// answer normally (the root is out of reach, not a fault).
func TestFilterOnADestroyedRootLeaves(t *testing.T) {
	fv, c := serve(t, testTopology())
	vm, f := createVM(t, fv, c, "C0", nil, vmSpec("short-lived", "shared", 1, 256))
	if f != nil {
		t.Fatal(faultText(f))
	}
	w := newWatcher(t, c, types.PropertyFilterSpec{ObjectSet: []types.ObjectSpec{{Obj: vm}},
		PropSet: []types.PropertySpec{{Type: "VirtualMachine", PathSet: []string{"name"}}}})
	w.next(0)
	if !w.has("short-lived") {
		t.Fatalf("initial: %v", w.names)
	}
	tasks{t}.must(object.NewVirtualMachine(c.Client, vm).Destroy(bg))
	w.until("the destroyed root leaving", func() bool { return !w.has("short-lived") })
	if w.next(0) {
		t.Errorf("an answer after the root left: %v", w.kinds)
	}
}
