// VM placement and argument checks for CreateVM_Task and RegisterVM_Task,
// moving hosts out of clusters into folders, and VM power-on rules.
package main

import (
	"cmp"
	"slices"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// folder replaces vcsim's CreateVM_Task and RegisterVM_Task, which place a
// VM on a random host of the pool's compute resource (maintenance mode and
// disconnected hosts included), accept a host of another cluster, panic on
// an unknown datastore or a cluster whose hosts lack it, and, through
// hostsWithDatastore's `attached := hosts[:0]`, overwrite the cluster's host
// list in place. fakevc checks every argument and places the VM itself, then
// hands vcsim an explicit, valid host. It also lets MoveIntoFolder_Task move a
// host out of its cluster (vcsim answers NotSupported).
type folder struct {
	*simulator.Folder
	w *world
}

func (*folder) adds() []string {
	return []string{"CreateVM_Task", "RegisterVM_Task", "MoveIntoFolder_Task", "Rename_Task", "Destroy_Task"}
}

// failedTask is a task that fails with fault, as vCenter reports a
// placement or configuration error: through the task, not the call.
func failedTask(ctx *simulator.Context, e mo.Reference, name string, fault types.BaseMethodFault) types.ManagedObjectReference {
	return simulator.CreateTask(e, name, func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, fault
	}).Run(ctx)
}

// CreateVMTask checks the arguments, picks a host and lets vcsim create the VM.
func (f *folder) CreateVMTask(ctx *simulator.Context, req *types.CreateVM_Task) soap.HasFault {
	if fault := f.checkCall(ctx, req.Pool, req.Host); fault != nil {
		return &methods.CreateVM_TaskBody{Fault_: simulator.Fault("", fault)}
	}
	var vmPath string
	if req.Config.Files != nil {
		vmPath = req.Config.Files.VmPathName
	}
	var fault types.BaseMethodFault
	switch {
	case req.Config.Name == "":
		fault = withMessage(&types.InvalidVmConfig{Property: "configSpec.name"}, "the VM has no name")
	case vmPath == "":
		fault = withMessage(&types.InvalidVmConfig{Property: "configSpec.files.vmPathName"}, "the VM has no vmPathName")
	}
	if fault == nil {
		if other := findByName(ctx, req.Config.Name, f.ChildEntity); other != nil {
			fault = withMessage(&types.DuplicateName{Name: req.Config.Name, Object: other.Reference()},
				"the name %q is already in use in this folder", req.Config.Name)
		}
	}
	var host types.ManagedObjectReference
	if fault == nil {
		host, fault = f.place(ctx, req.Pool, req.Host, vmPath, req.Config.DeviceChange)
	}
	if fault != nil {
		return &methods.CreateVM_TaskBody{Res: &types.CreateVM_TaskResponse{Returnval: failedTask(ctx, f.Folder, "createVm", fault)}}
	}
	r := *req
	r.Host = &host
	return f.Folder.CreateVMTask(ctx, &r)
}

// RegisterVMTask places a VM registered into a pool as CreateVMTask does
// (checking a given host). A template, registered on a host without a pool,
// must still live on a datastore of the folder's datacenter: vcsim panics
// in the task (ending the process) on any other.
func (f *folder) RegisterVMTask(ctx *simulator.Context, req *types.RegisterVM_Task) soap.HasFault {
	if req.Pool == nil {
		var fault types.BaseMethodFault
		switch h, ok := ctx.Map.Get(ptrOr(req.Host)).(*simulator.HostSystem); {
		case !req.AsTemplate || !ok:
			fault = withMessage(&types.InvalidArgument{InvalidProperty: "pool"}, "a VM is registered into a resource pool, a template on a host")
		case datacenterOf(ctx.Map, h) != datacenterOf(ctx.Map, f.Folder):
			fault = withMessage(&types.InvalidArgument{InvalidProperty: "host"}, "host %s is not in the folder's datacenter", h.Name)
		default:
			fault = f.checkPath(ctx, req.Path, h)
		}
		if fault != nil {
			return &methods.RegisterVM_TaskBody{Res: &types.RegisterVM_TaskResponse{Returnval: failedTask(ctx, f.Folder, "registerVm", fault)}}
		}
		return f.Folder.RegisterVMTask(ctx, req)
	}
	if fault := f.checkCall(ctx, *req.Pool, req.Host); fault != nil {
		return &methods.RegisterVM_TaskBody{Fault_: simulator.Fault("", fault)}
	}
	host, fault := f.place(ctx, *req.Pool, req.Host, req.Path, nil)
	if fault != nil {
		return &methods.RegisterVM_TaskBody{Res: &types.RegisterVM_TaskResponse{Returnval: failedTask(ctx, f.Folder, "registerVm", fault)}}
	}
	r := *req
	r.Host = &host
	return f.Folder.RegisterVMTask(ctx, &r)
}

func ptrOr(ref *types.ManagedObjectReference) types.ManagedObjectReference {
	if ref == nil {
		return types.ManagedObjectReference{}
	}
	return *ref
}

// checkPath checks that a VM's path names a datastore of the folder's
// datacenter that the host mounts.
func (f *folder) checkPath(ctx *simulator.Context, vmPath string, h *simulator.HostSystem) types.BaseMethodFault {
	var p object.DatastorePath
	if !p.FromString(vmPath) || p.Datastore == "" {
		return withMessage(&types.InvalidDatastorePath{DatastorePath: vmPath}, "%q is not a datastore path", vmPath)
	}
	dc := datacenterOf(ctx.Map, f.Folder)
	ds, ok := findByName(ctx, p.Datastore, dc.Datastore).(*simulator.Datastore)
	if !ok || !slices.Contains(h.Datastore, ds.Self) {
		return withMessage(&types.InvalidDatastorePath{InvalidDatastore: types.InvalidDatastore{Name: p.Datastore},
			DatastorePath: vmPath}, "host %s mounts no datastore %q", h.Name, p.Datastore)
	}
	return nil
}

// checkMove checks what vcsim's MoveIntoFolder_Task takes on trust (it
// panics on a moref that is no entity, and moves a folder into itself or
// below itself, after which every walk up the tree loops for ever): each
// object exists, sits in a folder of this datacenter, is of a type this
// folder holds, is not this folder or above it, and has no namesake here.
func (f *folder) checkMove(ctx *simulator.Context, list []types.ManagedObjectReference) types.BaseMethodFault {
	dc := datacenterOf(ctx.Map, f.Folder)
	for _, ref := range list {
		e, ok := ctx.Map.Get(ref).(mo.Entity)
		if !ok {
			return &types.ManagedObjectNotFound{Obj: ref}
		}
		if e.Entity().Parent == nil {
			return withMessage(&types.NotSupported{}, "%s cannot be moved", ref)
		}
		if _, ok := ctx.Map.Get(*e.Entity().Parent).(*simulator.Folder); !ok || !slices.Contains(f.ChildType, ref.Type) {
			return withMessage(&types.NotSupported{}, "folder %s cannot hold %s", f.Name, ref)
		}
		if datacenterOf(ctx.Map, e) != dc {
			return withMessage(&types.InvalidArgument{InvalidProperty: "list"}, "%s is in another datacenter", ref)
		}
		for p := mo.Entity(f.Folder); p != nil; {
			if p.Reference() == ref {
				return withMessage(&types.InvalidFolder{Target: ref}, "folder %s is %s or inside it", f.Name, ref)
			}
			parent := p.Entity().Parent
			if parent == nil {
				break
			}
			p, _ = ctx.Map.Get(*parent).(mo.Entity)
		}
		if other := findByName(ctx, e.Entity().Name, f.ChildEntity); other != nil && other.Reference() != ref {
			return withMessage(&types.DuplicateName{Name: e.Entity().Name, Object: other.Reference()},
				"folder %s already holds a %q", f.Name, e.Entity().Name)
		}
	}
	return nil
}

// checkCall rejects what vCenter rejects before it creates a task: a folder
// that holds no VMs, and pool or host arguments that are not such objects.
func (f *folder) checkCall(ctx *simulator.Context, pool types.ManagedObjectReference, host *types.ManagedObjectReference) types.BaseMethodFault {
	if !slices.Contains(f.ChildType, "VirtualMachine") {
		return withMessage(&types.NotSupported{}, "folder %s holds no virtual machines", f.Name)
	}
	switch ctx.Map.Get(pool).(type) {
	case nil:
		return &types.ManagedObjectNotFound{Obj: pool}
	case *simulator.ResourcePool, *simulator.VirtualApp:
	default:
		return withMessage(&types.InvalidArgument{InvalidProperty: "pool"}, "%s is not a resource pool", pool)
	}
	if host != nil {
		switch ctx.Map.Get(*host).(type) {
		case nil:
			return &types.ManagedObjectNotFound{Obj: *host}
		case *simulator.HostSystem:
		default:
			return withMessage(&types.InvalidArgument{InvalidProperty: "host"}, "%s is not a host", *host)
		}
	}
	return nil
}

// place chooses the host for a new VM, or says why there is none.
//
// The VM's datastores are the one in vmPathName and those of the disks it
// adds; each must be a datastore of the folder's datacenter
// (InvalidDatastorePath / InvalidDatastore otherwise), accessible
// (InaccessibleDatastore), not in or entering maintenance mode
// (InvalidDatastoreState), with room for the thick disks (NoDiskSpace). A given host must belong to the pool's compute
// resource (InvalidArgument), be connected (InvalidHostConnectionState), not
// in maintenance mode (InvalidHostState) and mount every datastore
// (DatastoreNotWritableOnHost). Without a host, the candidates are the
// compute resource's connected hosts outside maintenance mode
// (NoActiveHostInCluster when there is none) that mount every datastore
// (InvalidDatastore when none does); of those, the one with the most memory
// left after the configured memory of the VMs registered on it, then the
// first by name: deterministic, and it spreads VMs as DRS would.
func (f *folder) place(ctx *simulator.Context, poolRef types.ManagedObjectReference, hostRef *types.ManagedObjectReference,
	vmPath string, devices []types.BaseVirtualDeviceConfigSpec) (types.ManagedObjectReference, types.BaseMethodFault) {
	var none types.ManagedObjectReference
	dc := datacenterOf(ctx.Map, f.Folder)
	poolObj, ok := ctx.Map.Get(poolRef).(mo.Entity)
	if !ok { // removed since checkCall
		return none, &types.ManagedObjectNotFound{Obj: poolRef}
	}
	if dc == nil || datacenterOf(ctx.Map, poolObj) != dc {
		return none, withMessage(&types.InvalidArgument{InvalidProperty: "pool"},
			"resource pool %s is not in the datacenter of folder %s", poolRef, f.Name)
	}

	var home object.DatastorePath
	if !home.FromString(vmPath) || home.Datastore == "" {
		return none, withMessage(&types.InvalidDatastorePath{DatastorePath: vmPath}, "%q is not a datastore path", vmPath)
	}
	homeDS, ok := ctx.Map.FindByName(home.Datastore, dc.Datastore).(*simulator.Datastore)
	if !ok {
		return none, withMessage(&types.InvalidDatastorePath{InvalidDatastore: types.InvalidDatastore{Name: home.Datastore},
			DatastorePath: vmPath}, "datastore %q of %q is not in datacenter %s", home.Datastore, vmPath, dc.Name)
	}
	needed := []*simulator.Datastore{homeDS}
	thick := map[*simulator.Datastore]int64{}
	for _, change := range devices {
		spec := change.GetVirtualDeviceConfigSpec()
		disk, ok := spec.Device.(*types.VirtualDisk)
		if !ok || spec.Operation != types.VirtualDeviceConfigSpecOperationAdd {
			continue
		}
		ds := homeDS
		if b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
			info := b.GetVirtualDeviceFileBackingInfo()
			var p object.DatastorePath
			switch {
			case info.Datastore != nil:
				d, ok := ctx.Map.Get(*info.Datastore).(*simulator.Datastore)
				if !ok || !slices.Contains(dc.Datastore, d.Self) {
					return none, withMessage(&types.InvalidDatastore{Datastore: info.Datastore},
						"disk datastore %s is not in datacenter %s", *info.Datastore, dc.Name)
				}
				ds = d
			case p.FromString(info.FileName) && p.Datastore != "":
				d, ok := ctx.Map.FindByName(p.Datastore, dc.Datastore).(*simulator.Datastore)
				if !ok {
					return none, withMessage(&types.InvalidDatastorePath{InvalidDatastore: types.InvalidDatastore{Name: p.Datastore},
						DatastorePath: info.FileName}, "datastore %q of disk %q is not in datacenter %s", p.Datastore, info.FileName, dc.Name)
				}
				ds = d
			}
			if fb, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo); !ok || fb.ThinProvisioned == nil || !*fb.ThinProvisioned {
				size := disk.CapacityInBytes
				if size == 0 {
					size = disk.CapacityInKB * 1024
				}
				thick[ds] += size
			}
		}
		if !slices.Contains(needed, ds) {
			needed = append(needed, ds)
		}
	}
	for _, ds := range needed {
		if fault := datastoreUnusable(ds); fault != nil {
			return none, fault
		}
	}
	for ds, size := range thick {
		if size > ds.Summary.FreeSpace {
			return none, withMessage(&types.NoDiskSpace{FileFault: types.FileFault{File: vmPath}, Datastore: ds.Name},
				"datastore %s has %d MB free, the VM's thick disks need %d MB", ds.Name, ds.Summary.FreeSpace/mib, size/mib)
		}
	}

	crRef := ownerOf(poolObj)
	var cr *mo.ComputeResource
	switch o := ctx.Map.Get(crRef).(type) {
	case *simulator.ClusterComputeResource:
		cr = &o.ComputeResource
	case *mo.ComputeResource:
		cr = o
	default:
		return none, withMessage(&types.InvalidArgument{InvalidProperty: "pool"}, "resource pool %s has no compute resource", poolRef)
	}
	mounts := func(h *simulator.HostSystem) *simulator.Datastore {
		for _, ds := range needed {
			if !slices.Contains(h.Datastore, ds.Self) {
				return ds
			}
		}
		return nil
	}

	if hostRef != nil {
		h, ok := ctx.Map.Get(*hostRef).(*simulator.HostSystem)
		if !ok {
			return none, &types.ManagedObjectNotFound{Obj: *hostRef}
		}
		switch {
		case !slices.Contains(cr.Host, h.Self):
			return none, withMessage(&types.InvalidArgument{InvalidProperty: "host"},
				"host %s is not in %s, the compute resource of the pool", h.Name, cr.Name)
		case h.Runtime.ConnectionState != types.HostSystemConnectionStateConnected:
			return none, (&host{HostSystem: h}).notConnected()
		case h.Runtime.InMaintenanceMode:
			ref := h.Self
			return none, withMessage(&types.InvalidHostState{Host: &ref}, "host %s is in maintenance mode", h.Name)
		}
		if ds := mounts(h); ds != nil {
			ref := ds.Self
			return none, withMessage(&types.DatastoreNotWritableOnHost{
				InvalidDatastore: types.InvalidDatastore{Datastore: &ref, Name: ds.Name}, Host: h.Self},
				"host %s does not mount datastore %s", h.Name, ds.Name)
		}
		return h.Self, nil
	}

	type candidate struct {
		h    *simulator.HostSystem
		free int64
	}
	var active, fits []candidate
	for _, ref := range cr.Host {
		h, ok := ctx.Map.Get(ref).(*simulator.HostSystem)
		if !ok || h.Runtime.ConnectionState != types.HostSystemConnectionStateConnected || h.Runtime.InMaintenanceMode {
			continue
		}
		c := candidate{h: h, free: h.Summary.Hardware.MemorySize}
		for _, vmRef := range h.Vm {
			if vm, ok := ctx.Map.Get(vmRef).(*simulator.VirtualMachine); ok && vm.Config != nil {
				c.free -= int64(vm.Config.Hardware.MemoryMB) * mib
			}
		}
		active = append(active, c)
		if mounts(h) == nil {
			fits = append(fits, c)
		}
	}
	if len(active) == 0 {
		return none, withMessage(&types.NoActiveHostInCluster{ComputeResource: cr.Self},
			"%s has no connected host outside maintenance mode", cr.Name)
	}
	if len(fits) == 0 {
		ds := needed[0]
		for _, c := range active {
			if missing := mounts(c.h); missing != nil {
				ds = missing
				break
			}
		}
		ref := ds.Self
		return none, withMessage(&types.InvalidDatastore{Datastore: &ref, Name: ds.Name},
			"no active host of %s mounts datastore %s", cr.Name, ds.Name)
	}
	best := slices.MinFunc(fits, func(a, b candidate) int {
		if c := cmp.Compare(b.free, a.free); c != 0 {
			return c
		}
		return cmp.Compare(a.h.Name, b.h.Name)
	})
	return best.h.Self, nil
}

// datastoreUnusable is why a VM cannot be placed on a datastore, as vCenter
// answers: InaccessibleDatastore when it is not accessible, InvalidDatastoreState
// when it is in (or entering) maintenance mode; nil when it can take the VM.
func datastoreUnusable(ds *simulator.Datastore) types.BaseMethodFault {
	ref := ds.Self
	if !ds.Summary.Accessible {
		return withMessage(&types.InaccessibleDatastore{InvalidDatastore: types.InvalidDatastore{Datastore: &ref, Name: ds.Name},
			Detail: "not accessible"}, "datastore %s is not accessible", ds.Name)
	}
	if mode := ds.Summary.MaintenanceMode; mode != "" && mode != string(types.DatastoreSummaryMaintenanceModeStateNormal) {
		return withMessage(&types.InvalidDatastoreState{DatastoreName: ds.Name}, "datastore %s is %s", ds.Name, mode)
	}
	return nil
}

// ownerOf is the compute resource of a resource pool or vApp.
func ownerOf(pool mo.Entity) types.ManagedObjectReference {
	switch p := pool.(type) {
	case *simulator.ResourcePool:
		return p.Owner
	case *simulator.VirtualApp:
		return p.Owner
	}
	return types.ManagedObjectReference{}
}

// MoveIntoFolderTask moves hosts out of their cluster into this host
// folder, each as a standalone host with its own compute resource, as
// vCenter does; a host in a cluster must be in maintenance mode
// (InvalidState). Anything else is vcsim's MoveIntoFolder_Task.
func (f *folder) MoveIntoFolderTask(ctx *simulator.Context, req *types.MoveIntoFolder_Task) soap.HasFault {
	var hosts []*simulator.HostSystem
	for _, ref := range req.List {
		if h, ok := ctx.Map.Get(ref).(*simulator.HostSystem); ok {
			hosts = append(hosts, h)
		}
	}
	fail := func(fault types.BaseMethodFault) soap.HasFault {
		return &methods.MoveIntoFolder_TaskBody{Fault_: simulator.Fault("", fault)}
	}
	if len(hosts) == 0 {
		if fault := f.checkMove(ctx, req.List); fault != nil {
			return fail(fault)
		}
		return f.Folder.MoveIntoFolderTask(ctx, req)
	}
	if len(hosts) != len(req.List) {
		return fail(withMessage(&types.InvalidArgument{InvalidProperty: "list"}, "hosts cannot move together with other objects"))
	}
	if !slices.Contains(f.ChildType, "ComputeResource") {
		return fail(withMessage(&types.NotSupported{}, "folder %s holds no hosts", f.Name))
	}
	dc := datacenterOf(ctx.Map, f.Folder)
	for _, h := range hosts {
		if datacenterOf(ctx.Map, h) != dc {
			return fail(withMessage(&types.InvalidArgument{InvalidProperty: "list"}, "host %s is in another datacenter", h.Name))
		}
		if _, ok := ctx.Map.Get(*h.Parent).(*simulator.ClusterComputeResource); !ok {
			return fail(withMessage(&types.NotSupported{}, "host %s is standalone: move its compute resource instead", h.Name))
		}
	}
	task := simulator.CreateTask(f.Folder, "moveIntoFolder", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		for _, h := range hosts {
			if !h.Runtime.InMaintenanceMode {
				return nil, withMessage(&types.InvalidState{}, "host %s must be in maintenance mode to leave its cluster", h.Name)
			}
		}
		for _, h := range hosts {
			cr := newStandaloneResource(ctx, f.Folder, h)
			detachHost(ctx, h, *cr.ResourcePool)
			attachHost(ctx, h, cr.Self, *cr.ResourcePool)
		}
		return nil, nil
	})
	return &methods.MoveIntoFolder_TaskBody{Res: &types.MoveIntoFolder_TaskResponse{Returnval: task.Run(ctx)}}
}

// newStandaloneResource wraps a host in a new ComputeResource (with its
// environment browser and root pool) in folder, as vcsim's
// CreateStandaloneHost does. The host must have its moref; the caller makes
// the compute resource its parent.
func newStandaloneResource(ctx *simulator.Context, folder *simulator.Folder, h *simulator.HostSystem) *mo.ComputeResource {
	reg := ctx.Map
	cr := &mo.ComputeResource{
		ConfigurationEx: &types.ComputeResourceConfigInfo{
			VmSwapPlacement: string(types.VirtualMachineConfigInfoSwapPlacementTypeVmDirectory),
		},
		Summary: &types.ComputeResourceSummary{OverallStatus: types.ManagedEntityStatusGreen},
	}
	reg.NewEntity(cr)
	cr.Name = h.Name
	cr.Network = slices.Clone(h.Network)
	cr.Host = []types.ManagedObjectReference{h.Self}
	cr.Datastore = slices.Clone(h.Datastore)
	eb := &simulator.EnvironmentBrowser{}
	ebRef := reg.Put(eb).Reference()
	eb.QueryConfigOptionDescriptorResponse.Returnval = configOptionDescriptors(cr.Host)
	cr.EnvironmentBrowser = &ebRef
	pool := simulator.NewResourcePool(ctx)
	reg.PutEntity(cr, reg.NewEntity(pool))
	cr.ResourcePool = &pool.Self
	pool.Owner = cr.Self
	putChild(ctx, folder, cr)
	return cr
}

// virtualMachine refuses to power on a VM whose host is not connected
// (vcsim powers it on).
type virtualMachine struct {
	*simulator.VirtualMachine
	w *world
}

func (*virtualMachine) adds() []string { return []string{"PowerOnVM_Task", "Rename_Task"} }

func (v *virtualMachine) PowerOnVMTask(ctx *simulator.Context, req *types.PowerOnVM_Task) soap.HasFault {
	if v.Runtime.Host != nil {
		if h, ok := ctx.Map.Get(*v.Runtime.Host).(*simulator.HostSystem); ok &&
			h.Runtime.ConnectionState != types.HostSystemConnectionStateConnected {
			return &methods.PowerOnVM_TaskBody{Res: &types.PowerOnVM_TaskResponse{
				Returnval: failedTask(ctx, v.VirtualMachine, "powerOn", (&host{HostSystem: h}).notConnected())}}
		}
	}
	return v.VirtualMachine.PowerOnVMTask(ctx, req)
}
