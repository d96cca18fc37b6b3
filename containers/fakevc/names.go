// vCenter's rules for the names of inventory objects, on every create and rename.
package main

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// maxNameLength is the longest entity name vCenter takes (in characters).
// The API reference says "a non-empty string of less than 80 characters";
// vCenter's clients and its knowledge base say up to 80, which fakevc takes.
const maxNameLength = 80

// proposedName points at the new name a create or rename request carries,
// and says whether it names an entity (escaped as vCenter does) and whether
// it may be left empty.
func proposedName(body any) (name *string, entity, optional bool) {
	switch r := body.(type) {
	case *types.CreateFolder:
		return &r.Name, true, false
	case *types.CreateDatacenter:
		return &r.Name, true, false
	case *types.CreateClusterEx:
		return &r.Name, true, false
	case *types.CreateCluster:
		return &r.Name, true, false
	case *types.CreateResourcePool:
		return &r.Name, true, false
	case *types.CreateVApp:
		return &r.Name, true, false
	case *types.CreateStoragePod:
		return &r.Name, true, false
	case *types.CreateVM_Task:
		return &r.Config.Name, true, true // no name at all: InvalidVmConfig, from the task (placement.go)
	case *types.CloneVM_Task:
		return &r.Name, true, false
	case *types.RegisterVM_Task:
		return &r.Name, true, true // the VM's own displayName when unset
	case *types.Rename_Task:
		return &r.NewName, true, false
	case *types.RenameDatastore:
		return &r.NewName, true, false
	case *types.CreateLocalDatastore:
		return &r.Name, true, false
	case *types.CreateNasDatastore:
		return &r.Spec.LocalPath, true, false
	case *types.CreateVmfsDatastore:
		return &r.Spec.Vmfs.VolumeName, true, false
	case *types.CreateDVS_Task:
		if r.Spec.ConfigSpec != nil {
			return &r.Spec.ConfigSpec.GetDVSConfigSpec().Name, true, false
		}
	case *types.AddStandaloneHost_Task:
		return &r.Spec.HostName, false, false
	case *types.AddHost_Task:
		return &r.Spec.HostName, false, false
	}
	return nil, false, false
}

// checkNames applies the name rules to a request before vcsim sees it: an
// empty name, or one longer than 80 characters, is InvalidName (a fault of
// the call: an argument check); an entity name has '%' (unless it starts an
// escape such as %2f), '/' and '\' escaped, as vCenter does. vcsim takes
// any name, and an entity with an empty name panics every later lookup by
// name among its siblings (a rename kills the process, a create hangs the
// folder).
func checkNames(ctx *simulator.Context, m *simulator.Method) types.BaseMethodFault {
	name, entity, optional := proposedName(m.Body)
	if name == nil || (optional && *name == "") {
		return nil
	}
	if f := invalidName(*name); f != nil {
		return f
	}
	if entity {
		*name = escapeName(*name)
	}
	// vcsim's CreateDatacenter takes a name its folder already holds.
	if req, ok := m.Body.(*types.CreateDatacenter); ok {
		if f, ok := ctx.Map.Get(m.This).(*simulator.Folder); ok {
			if e := findByName(ctx, req.Name, f.ChildEntity); e != nil {
				return withMessage(&types.DuplicateName{Name: req.Name, Object: e.Reference()},
					"the name %q is already in use", req.Name)
			}
		}
	}
	return nil
}

// invalidName is InvalidName for a name vCenter refuses.
func invalidName(name string) types.BaseMethodFault {
	var why string
	switch {
	case strings.TrimSpace(name) == "":
		why = "the name is empty"
	case !utf8.ValidString(name):
		why = "the name is not valid UTF-8"
	case utf8.RuneCountInString(name) > maxNameLength:
		why = fmt.Sprintf("the name is %d characters long; at most %d are allowed", utf8.RuneCountInString(name), maxNameLength)
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		why = "the name contains a control character"
	default:
		return nil
	}
	return withMessage(&types.InvalidName{Name: name}, "%s", why)
}

// escapeName escapes '%' (unless it starts a %XX escape), '/' and '\' as
// vCenter does with entity names.
func escapeName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		switch c := name[i]; c {
		case '%':
			if i+2 < len(name) && isHex(name[i+1]) && isHex(name[i+2]) {
				b.WriteByte(c)
			} else {
				b.WriteString("%25")
			}
		case '/':
			b.WriteString("%2f")
		case '\\':
			b.WriteString("%5c")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// findByName is Registry.FindByName without its panic on a nameless entity.
func findByName(ctx *simulator.Context, name string, refs []types.ManagedObjectReference) mo.Entity {
	for _, ref := range refs {
		if e, ok := ctx.Map.Get(ref).(mo.Entity); ok && e.Entity().Name == name {
			return e
		}
	}
	return nil
}

// siblings are the objects whose names an entity's name must differ from:
// its folder's children, a pool's sibling pools, and for a datastore every
// datastore of its datacenter.
func siblings(ctx *simulator.Context, e mo.Entity) []types.ManagedObjectReference {
	parent := e.Entity().Parent
	if parent == nil {
		return nil
	}
	var out []types.ManagedObjectReference
	switch p := ctx.Map.Get(*parent).(type) {
	case *simulator.Folder:
		out = p.ChildEntity
	case *simulator.ResourcePool:
		out = p.ResourcePool.ResourcePool
	}
	if _, ok := e.(*simulator.Datastore); ok {
		if dc := datacenterOf(ctx.Map, e); dc != nil {
			out = append(append([]types.ManagedObjectReference{}, out...), dc.Datastore...)
		}
	}
	return out
}

// rename renames an entity with vCenter's rules: DuplicateName when a
// sibling has the name (vcsim: InvalidArgument, and only in a folder);
// renaming to the current name succeeds. The name itself was checked and
// escaped by checkNames.
func rename(ctx *simulator.Context, e mo.Entity, name string) types.BaseMethodFault {
	self := e.Entity().Self
	if other := findByName(ctx, name, siblings(ctx, e)); other != nil && other.Reference() != self {
		return withMessage(&types.DuplicateName{Name: name, Object: other.Reference()}, "the name %q is already in use", name)
	}
	ctx.WithLock(self, func() {
		changes := []types.PropertyChange{{Name: "name", Val: name}}
		switch o := e.(type) {
		case *simulator.VirtualMachine:
			if o.Config != nil {
				changes = append(changes, types.PropertyChange{Name: "config.name", Val: name})
			}
			changes = append(changes, types.PropertyChange{Name: "summary.config.name", Val: name})
		case *simulator.Datastore:
			changes = append(changes, types.PropertyChange{Name: "summary.name", Val: name})
			if o.Info != nil {
				o.Info.GetDatastoreInfo().Name = name
			}
		case *simulator.ResourcePool:
			if s, ok := o.Summary.(*types.ResourcePoolSummary); ok {
				s.Name = name
			}
		}
		ctx.Map.Update(ctx, e, changes)
	})
	return nil
}

// renameTask is Rename_Task with vCenter's rules (see rename).
func renameTask(ctx *simulator.Context, e mo.Entity, req *types.Rename_Task) soap.HasFault {
	task := simulator.CreateTask(e, "rename", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, rename(ctx, e, req.NewName)
	})
	return &methods.Rename_TaskBody{Res: &types.Rename_TaskResponse{Returnval: task.Run(ctx)}}
}

func (c *cluster) RenameTask(ctx *simulator.Context, req *types.Rename_Task) soap.HasFault {
	return renameTask(ctx, c.ClusterComputeResource, req)
}

func (f *folder) RenameTask(ctx *simulator.Context, req *types.Rename_Task) soap.HasFault {
	return renameTask(ctx, f.Folder, req)
}

func (v *virtualMachine) RenameTask(ctx *simulator.Context, req *types.Rename_Task) soap.HasFault {
	return renameTask(ctx, v.VirtualMachine, req)
}

// datacenter, resourcePool and datastore add Rename_Task with vCenter's
// rules (vcsim: a datacenter's without DuplicateName, none for pools and
// datastores).
type datacenter struct {
	*simulator.Datacenter
	w *world
}

func (*datacenter) adds() []string { return []string{"Rename_Task"} }

func (d *datacenter) RenameTask(ctx *simulator.Context, req *types.Rename_Task) soap.HasFault {
	return renameTask(ctx, d.Datacenter, req)
}

type resourcePool struct {
	*simulator.ResourcePool
	w *world
}

func (*resourcePool) adds() []string { return []string{"Rename_Task"} }

func (p *resourcePool) RenameTask(ctx *simulator.Context, req *types.Rename_Task) soap.HasFault {
	return renameTask(ctx, p.ResourcePool, req)
}

type datastore struct {
	*simulator.Datastore
	w *world
}

func (*datastore) adds() []string { return []string{"Rename_Task", "RenameDatastore"} }

func (d *datastore) RenameTask(ctx *simulator.Context, req *types.Rename_Task) soap.HasFault {
	return renameTask(ctx, d.Datastore, req)
}

// RenameDatastore is the older, synchronous rename of a datastore.
func (d *datastore) RenameDatastore(ctx *simulator.Context, req *types.RenameDatastore) soap.HasFault {
	if f := rename(ctx, d.Datastore, req.NewName); f != nil {
		return &methods.RenameDatastoreBody{Fault_: simulator.Fault("", f)}
	}
	return &methods.RenameDatastoreBody{Res: &types.RenameDatastoreResponse{}}
}
