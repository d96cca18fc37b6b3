// Cluster and host life cycle with vCenter's semantics: cluster destroy, host
// move, disconnect and reconnect, maintenance mode, host destroy.
package main

import (
	"fmt"
	"slices"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// withMessage attaches a one-line explanation to a fault; fidelity.task
// turns it into the task error's localizedMessage.
func withMessage[F types.BaseMethodFault](f F, format string, args ...any) F {
	f.GetMethodFault().FaultMessage = []types.LocalizableMessage{{Key: "fakevc", Message: fmt.Sprintf(format, args...)}}
	return f
}

// cluster adds Destroy_Task to vcsim's ClusterComputeResource and replaces
// its MoveInto_Task (which leaves the host in its old cluster's host list,
// updates no summary and notifies no PropertyCollector) and MoveHostInto_Task
// (which vcsim lacks).
type cluster struct {
	*simulator.ClusterComputeResource
	w *world
}

func (*cluster) adds() []string {
	return []string{"Destroy_Task", "MoveInto_Task", "MoveHostInto_Task", "Rename_Task"}
}

// DestroyTask removes the cluster with its hosts and resource pools, as
// vCenter does. Choice: while any VM lives on one of its hosts the call fails
// with ResourceInUse (vcsim's HostSystem.Destroy_Task rule), so no VM is ever
// left without a host.
func (c *cluster) DestroyTask(ctx *simulator.Context, req *types.Destroy_Task) soap.HasFault {
	return destroyComputeResource(ctx, c.ClusterComputeResource, &c.ClusterComputeResource.ComputeResource)
}

// destroyComputeResource removes a cluster or a standalone host's compute
// resource with its hosts, pools and environment browser; refused with
// ResourceInUse while any of its hosts has VMs.
func destroyComputeResource(ctx *simulator.Context, obj mo.Reference, c *mo.ComputeResource) soap.HasFault {
	task := simulator.CreateTask(obj, "destroy", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		for _, ref := range c.Host {
			if h, ok := ctx.Map.Get(ref).(*simulator.HostSystem); ok && len(h.Vm) > 0 {
				return nil, withMessage(&types.ResourceInUse{Type: "VirtualMachine", Name: h.Name},
					"host %s of %s still has virtual machines", h.Name, c.Name)
			}
		}
		for _, ref := range slices.Clone(c.Host) {
			removeHost(ctx, ref)
		}
		if c.ResourcePool != nil {
			removePool(ctx, *c.ResourcePool)
		}
		if c.EnvironmentBrowser != nil {
			ctx.Map.Remove(ctx, *c.EnvironmentBrowser)
		}
		removeChild(ctx, *c.Parent, c.Self)
		ctx.Map.Remove(ctx, c.Self)
		return nil, nil
	})
	return &methods.Destroy_TaskBody{Res: &types.Destroy_TaskResponse{Returnval: task.Run(ctx)}}
}

// MoveIntoTask moves hosts into the cluster (ClusterComputeResource.MoveInto_Task).
func (c *cluster) MoveIntoTask(ctx *simulator.Context, req *types.MoveInto_Task) soap.HasFault {
	if f := c.checkMove(ctx, req.Host, nil); f != nil {
		return &methods.MoveInto_TaskBody{Fault_: simulator.Fault("", f)}
	}
	task := simulator.CreateTask(c.ClusterComputeResource, "moveInto", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, c.move(ctx, req.Host, nil)
	})
	return &methods.MoveInto_TaskBody{Res: &types.MoveInto_TaskResponse{Returnval: task.Run(ctx)}}
}

// MoveHostIntoTask moves one host into the cluster, its VMs into pool (or
// the cluster's root pool).
func (c *cluster) MoveHostIntoTask(ctx *simulator.Context, req *types.MoveHostInto_Task) soap.HasFault {
	hosts := []types.ManagedObjectReference{req.Host}
	if f := c.checkMove(ctx, hosts, req.ResourcePool); f != nil {
		return &methods.MoveHostInto_TaskBody{Fault_: simulator.Fault("", f)}
	}
	task := simulator.CreateTask(c.ClusterComputeResource, "moveHostInto", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, c.move(ctx, hosts, req.ResourcePool)
	})
	return &methods.MoveHostInto_TaskBody{Res: &types.MoveHostInto_TaskResponse{Returnval: task.Run(ctx)}}
}

// checkMove rejects arguments that are not hosts of this datacenter (a
// fault of the call itself, as vCenter's argument checks are).
func (c *cluster) checkMove(ctx *simulator.Context, hosts []types.ManagedObjectReference,
	pool *types.ManagedObjectReference) types.BaseMethodFault {
	dc := datacenterOf(ctx.Map, c.ClusterComputeResource)
	for _, ref := range hosts {
		h, ok := ctx.Map.Get(ref).(*simulator.HostSystem)
		if !ok {
			return &types.ManagedObjectNotFound{Obj: ref}
		}
		if datacenterOf(ctx.Map, h) != dc {
			return withMessage(&types.InvalidArgument{InvalidProperty: "host"},
				"host %s is not in the datacenter of cluster %s", h.Name, c.Name)
		}
	}
	if pool != nil {
		p, ok := ctx.Map.Get(*pool).(*simulator.ResourcePool)
		if !ok {
			return &types.ManagedObjectNotFound{Obj: *pool}
		}
		if p.Owner != c.Self {
			return withMessage(&types.InvalidArgument{InvalidProperty: "resourcePool"},
				"resource pool %s does not belong to cluster %s", p.Name, c.Name)
		}
	}
	return nil
}

// move implements MoveInto_Task with vCenter's rules: a host that is in
// another cluster must be in maintenance mode (InvalidState otherwise); a
// standalone host's compute resource and root pool are removed; the host's
// VMs move with it into pool or the cluster's root pool. Choice: a host that
// is already in this cluster fails with DuplicateName, as vcsim does. The
// checks run for every host before any host moves.
func (c *cluster) move(ctx *simulator.Context, hosts []types.ManagedObjectReference, pool *types.ManagedObjectReference) types.BaseMethodFault {
	for _, ref := range hosts {
		h, ok := ctx.Map.Get(ref).(*simulator.HostSystem)
		if !ok {
			return &types.ManagedObjectNotFound{Obj: ref}
		}
		if *h.Parent == c.Self {
			return withMessage(&types.DuplicateName{Name: h.Name, Object: ref}, "host %s is already in cluster %s", h.Name, c.Name)
		}
		if _, inCluster := ctx.Map.Get(*h.Parent).(*simulator.ClusterComputeResource); inCluster && !h.Runtime.InMaintenanceMode {
			return withMessage(&types.InvalidState{}, "host %s must be in maintenance mode to leave its cluster", h.Name)
		}
	}
	if pool == nil {
		pool = c.ResourcePool
	}
	for _, ref := range hosts {
		h, ok := ctx.Map.Get(ref).(*simulator.HostSystem)
		if !ok { // removed meanwhile
			return &types.ManagedObjectNotFound{Obj: ref}
		}
		detachHost(ctx, h, *pool)
		ctx.WithLock(c.ClusterComputeResource, func() {
			ctx.Map.Update(ctx, c.ClusterComputeResource, []types.PropertyChange{
				{Name: "host", Val: append(slices.Clone(c.Host), ref)}})
		})
		setEnvironmentBrowserHosts(ctx, c.EnvironmentBrowser, c.Host)
		attachHost(ctx, h, c.Self, *pool)
	}
	return nil
}

// detachHost takes a host out of its compute resource: out of a cluster's
// host list, or, for a standalone host, removing the compute resource with
// its pools (VMs in them go to newPool).
func detachHost(ctx *simulator.Context, h *simulator.HostSystem, newPool types.ManagedObjectReference) {
	switch parent := ctx.Map.Get(*h.Parent).(type) {
	case *simulator.ClusterComputeResource:
		ctx.WithLock(parent, func() {
			hosts := slices.DeleteFunc(slices.Clone(parent.Host), func(r types.ManagedObjectReference) bool { return r == h.Self })
			ctx.Map.Update(ctx, parent, []types.PropertyChange{{Name: "host", Val: hosts}})
		})
		setEnvironmentBrowserHosts(ctx, parent.EnvironmentBrowser, parent.Host)
	case *mo.ComputeResource:
		if parent.ResourcePool != nil {
			movePoolVMs(ctx, *parent.ResourcePool, newPool)
			removePool(ctx, *parent.ResourcePool)
		}
		if parent.EnvironmentBrowser != nil {
			ctx.Map.Remove(ctx, *parent.EnvironmentBrowser)
		}
		removeChild(ctx, *parent.Parent, parent.Self)
		ctx.Map.Remove(ctx, parent.Self)
	}
}

// attachHost makes parent the host's parent and moves the host's VMs that
// are still in a pool of another compute resource into pool.
func attachHost(ctx *simulator.Context, h *simulator.HostSystem, parent, pool types.ManagedObjectReference) {
	ctx.WithLock(h, func() {
		ctx.Map.Update(ctx, h, []types.PropertyChange{{Name: "parent", Val: parent}})
	})
	for _, ref := range slices.Clone(h.Vm) {
		vm, ok := ctx.Map.Get(ref).(*simulator.VirtualMachine)
		if !ok || vm.ResourcePool == nil {
			continue
		}
		if p, ok := ctx.Map.Get(*vm.ResourcePool).(*simulator.ResourcePool); ok && p.Owner == parent {
			continue
		}
		moveVM(ctx, vm, pool)
	}
}

// movePoolVMs moves every VM of a pool tree into another pool.
func movePoolVMs(ctx *simulator.Context, from, to types.ManagedObjectReference) {
	p, ok := ctx.Map.Get(from).(*simulator.ResourcePool)
	if !ok {
		return
	}
	for _, child := range slices.Clone(p.ResourcePool.ResourcePool) {
		movePoolVMs(ctx, child, to)
	}
	for _, ref := range slices.Clone(p.Vm) {
		if vm, ok := ctx.Map.Get(ref).(*simulator.VirtualMachine); ok {
			moveVM(ctx, vm, to)
		}
	}
}

// moveVM moves a VM from its pool to another one, with the pools' vm lists.
func moveVM(ctx *simulator.Context, vm *simulator.VirtualMachine, to types.ManagedObjectReference) {
	if vm.ResourcePool != nil {
		if old, ok := ctx.Map.Get(*vm.ResourcePool).(*simulator.ResourcePool); ok {
			ctx.WithLock(old, func() {
				vms := slices.DeleteFunc(slices.Clone(old.Vm), func(r types.ManagedObjectReference) bool { return r == vm.Self })
				ctx.Map.Update(ctx, old, []types.PropertyChange{{Name: "vm", Val: vms}})
			})
		}
	}
	if p, ok := ctx.Map.Get(to).(*simulator.ResourcePool); ok {
		ctx.WithLock(p, func() {
			ctx.Map.Update(ctx, p, []types.PropertyChange{{Name: "vm", Val: append(slices.Clone(p.Vm), vm.Self)}})
		})
		ctx.WithLock(vm, func() {
			ctx.Map.Update(ctx, vm, []types.PropertyChange{{Name: "resourcePool", Val: to}})
			if cr, ok := ctx.Map.Get(p.Owner).(mo.Entity); ok {
				if eb := environmentBrowserOf(cr); eb != nil {
					vm.EnvironmentBrowser = *eb
				}
			}
		})
	}
}

func environmentBrowserOf(e mo.Entity) *types.ManagedObjectReference {
	switch cr := e.(type) {
	case *simulator.ClusterComputeResource:
		return cr.EnvironmentBrowser
	case *mo.ComputeResource:
		return cr.EnvironmentBrowser
	}
	return nil
}

func setEnvironmentBrowserHosts(ctx *simulator.Context, ref *types.ManagedObjectReference, hosts []types.ManagedObjectReference) {
	if ref == nil {
		return
	}
	if eb, ok := ctx.Map.Get(*ref).(*simulator.EnvironmentBrowser); ok {
		ctx.WithLock(eb, func() { eb.QueryConfigOptionDescriptorResponse.Returnval = configOptionDescriptors(hosts) })
	}
}

// removeChild takes an entity out of a folder's childEntity.
func removeChild(ctx *simulator.Context, folder, child types.ManagedObjectReference) {
	if f, ok := ctx.Map.Get(folder).(*simulator.Folder); ok {
		ctx.WithLock(f, func() {
			children := slices.DeleteFunc(slices.Clone(f.ChildEntity), func(r types.ManagedObjectReference) bool { return r == child })
			ctx.Map.Update(ctx, f, []types.PropertyChange{{Name: "childEntity", Val: children}})
		})
	}
}

// host replaces vcsim's maintenance mode, connection and destroy methods:
// vcsim sets the fields directly (no PropertyCollector sees the change),
// accepts any state, and its Destroy_Task leaves the host in its cluster's
// host list and the datastores' mounts.
type host struct {
	*simulator.HostSystem
	w *world
}

func (*host) adds() []string {
	return []string{"EnterMaintenanceMode_Task", "ExitMaintenanceMode_Task", "DisconnectHost_Task",
		"ReconnectHost_Task", "Destroy_Task"}
}

func (h *host) notConnected() types.BaseMethodFault {
	ref := h.Self
	return withMessage(&types.InvalidHostConnectionState{InvalidHostState: types.InvalidHostState{Host: &ref}},
		"host %s is %s", h.Name, h.Runtime.ConnectionState)
}

// setRuntime publishes a host's connection state or maintenance mode (the
// same field under runtime and summary.runtime).
func setRuntime(ctx *simulator.Context, h *simulator.HostSystem, field string, val any) {
	ctx.WithLock(h, func() {
		ctx.Map.Update(ctx, h, []types.PropertyChange{{Name: "runtime." + field, Val: val},
			{Name: "summary.runtime." + field, Val: val}})
	})
}

// EnterMaintenanceModeTask puts a connected host into maintenance mode.
// vCenter semantics: InvalidState when the host already is in maintenance
// mode; the task completes once no powered-on VM runs on the host. In a
// cluster with DRS fully automated (vcsim's default) vCenter migrates them;
// fakevc does too, each to the connected host outside maintenance mode that
// mounts the VM's datastores and has the most memory left (then by name).
// Choice: where vCenter would wait (no DRS, or no host can take a VM) until
// the task's timeout, fakevc fails at once with InvalidState and moves no VM.
func (h *host) EnterMaintenanceModeTask(ctx *simulator.Context, req *types.EnterMaintenanceMode_Task) soap.HasFault {
	task := simulator.CreateTask(h.HostSystem, "enterMaintenanceMode", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if h.Runtime.ConnectionState != types.HostSystemConnectionStateConnected {
			return nil, h.notConnected()
		}
		if h.Runtime.InMaintenanceMode {
			return nil, withMessage(&types.InvalidState{}, "host %s is already in maintenance mode", h.Name)
		}
		moves, fault := h.evacuation(ctx)
		if fault != nil {
			return nil, fault
		}
		for _, m := range moves {
			migrate(ctx, m.vm, h.HostSystem, m.to)
		}
		setRuntime(ctx, h.HostSystem, "inMaintenanceMode", true)
		return nil, nil
	})
	return &methods.EnterMaintenanceMode_TaskBody{Res: &types.EnterMaintenanceMode_TaskResponse{Returnval: task.Run(ctx)}}
}

type move struct {
	vm *simulator.VirtualMachine
	to *simulator.HostSystem
}

// evacuation plans where the host's powered-on VMs go (see EnterMaintenanceModeTask).
func (h *host) evacuation(ctx *simulator.Context) ([]move, types.BaseMethodFault) {
	var running []*simulator.VirtualMachine
	for _, ref := range h.Vm {
		if vm, ok := ctx.Map.Get(ref).(*simulator.VirtualMachine); ok && vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
			running = append(running, vm)
		}
	}
	if len(running) == 0 {
		return nil, nil
	}
	c, ok := ctx.Map.Get(*h.Parent).(*simulator.ClusterComputeResource)
	if !ok || !drsAutomated(c) {
		return nil, withMessage(&types.InvalidState{}, "host %s runs powered-on VM %s and no DRS can move it", h.Name, running[0].Name)
	}
	free := map[types.ManagedObjectReference]int64{}
	var targets []*simulator.HostSystem
	for _, ref := range c.Host {
		t, ok := ctx.Map.Get(ref).(*simulator.HostSystem)
		if !ok || t.Self == h.Self || t.Runtime.ConnectionState != types.HostSystemConnectionStateConnected || t.Runtime.InMaintenanceMode {
			continue
		}
		targets = append(targets, t)
		free[t.Self] = freeMemory(ctx, t)
	}
	var moves []move
	for _, vm := range running {
		var best *simulator.HostSystem
		for _, t := range targets {
			if !mountsAll(t, vm.Datastore) {
				continue
			}
			if best == nil || free[t.Self] > free[best.Self] || (free[t.Self] == free[best.Self] && t.Name < best.Name) {
				best = t
			}
		}
		if best == nil {
			return nil, withMessage(&types.InvalidState{}, "host %s runs powered-on VM %s and no other host can take it", h.Name, vm.Name)
		}
		free[best.Self] -= int64(vm.Config.Hardware.MemoryMB) * mib
		moves = append(moves, move{vm, best})
	}
	return moves, nil
}

// drsAutomated tells whether DRS moves VMs of the cluster by itself.
func drsAutomated(c *simulator.ClusterComputeResource) bool {
	cfg, ok := c.ConfigurationEx.(*types.ClusterConfigInfoEx)
	if !ok || cfg.DrsConfig.Enabled == nil || !*cfg.DrsConfig.Enabled {
		return false
	}
	b := cfg.DrsConfig.DefaultVmBehavior
	return b == "" || b == types.DrsBehaviorFullyAutomated
}

// freeMemory is a host's memory less the configured memory of its VMs.
func freeMemory(ctx *simulator.Context, h *simulator.HostSystem) int64 {
	free := h.Summary.Hardware.MemorySize
	for _, ref := range h.Vm {
		if vm, ok := ctx.Map.Get(ref).(*simulator.VirtualMachine); ok && vm.Config != nil {
			free -= int64(vm.Config.Hardware.MemoryMB) * mib
		}
	}
	return free
}

func mountsAll(h *simulator.HostSystem, datastores []types.ManagedObjectReference) bool {
	for _, ds := range datastores {
		if !slices.Contains(h.Datastore, ds) {
			return false
		}
	}
	return true
}

// migrate moves a VM between two hosts of one cluster (a vMotion).
func migrate(ctx *simulator.Context, vm *simulator.VirtualMachine, from, to *simulator.HostSystem) {
	ctx.WithLock(from.Self, func() {
		vms := slices.DeleteFunc(slices.Clone(from.Vm), func(r types.ManagedObjectReference) bool { return r == vm.Self })
		ctx.Map.Update(ctx, from, []types.PropertyChange{{Name: "vm", Val: vms}})
	})
	ctx.WithLock(to.Self, func() {
		ctx.Map.Update(ctx, to, []types.PropertyChange{{Name: "vm", Val: append(slices.Clone(to.Vm), vm.Self)}})
	})
	ctx.WithLock(vm.Self, func() {
		ctx.Map.Update(ctx, vm, []types.PropertyChange{{Name: "runtime.host", Val: to.Self}, {Name: "summary.runtime.host", Val: to.Self}})
	})
}

// ExitMaintenanceModeTask takes a connected host out of maintenance mode;
// InvalidState when it is not in maintenance mode.
func (h *host) ExitMaintenanceModeTask(ctx *simulator.Context, req *types.ExitMaintenanceMode_Task) soap.HasFault {
	task := simulator.CreateTask(h.HostSystem, "exitMaintenanceMode", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if h.Runtime.ConnectionState != types.HostSystemConnectionStateConnected {
			return nil, h.notConnected()
		}
		if !h.Runtime.InMaintenanceMode {
			return nil, withMessage(&types.InvalidState{}, "host %s is not in maintenance mode", h.Name)
		}
		setRuntime(ctx, h.HostSystem, "inMaintenanceMode", false)
		return nil, nil
	})
	return &methods.ExitMaintenanceMode_TaskBody{Res: &types.ExitMaintenanceMode_TaskResponse{Returnval: task.Run(ctx)}}
}

// DisconnectHostTask marks a host disconnected: it leaves the cluster's
// effective figures, its VMs show connectionState disconnected, and its
// quickStats drop to zero. Disconnecting a disconnected host succeeds.
func (h *host) DisconnectHostTask(ctx *simulator.Context, req *types.DisconnectHost_Task) soap.HasFault {
	task := simulator.CreateTask(h.HostSystem, "disconnectHost", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		setRuntime(ctx, h.HostSystem, "connectionState", types.HostSystemConnectionStateDisconnected)
		return nil, nil
	})
	return &methods.DisconnectHost_TaskBody{Res: &types.DisconnectHost_TaskResponse{Returnval: task.Run(ctx)}}
}

// ReconnectHostTask connects a disconnected or not responding host again;
// its maintenance mode is kept.
func (h *host) ReconnectHostTask(ctx *simulator.Context, req *types.ReconnectHost_Task) soap.HasFault {
	task := simulator.CreateTask(h.HostSystem, "reconnectHost", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		setRuntime(ctx, h.HostSystem, "connectionState", types.HostSystemConnectionStateConnected)
		return nil, nil
	})
	return &methods.ReconnectHost_TaskBody{Res: &types.ReconnectHost_TaskResponse{Returnval: task.Run(ctx)}}
}

// DestroyTask removes a host from its cluster and the inventory, vCenter's
// "remove host". Rules: a connected host must be in maintenance mode
// (InvalidState), a host with VMs is refused with ResourceInUse (as vcsim
// does), and a standalone host cannot be destroyed (NotSupported: destroy its
// ComputeResource). The cluster's figures drop with it.
func (h *host) DestroyTask(ctx *simulator.Context, req *types.Destroy_Task) soap.HasFault {
	if _, ok := ctx.Map.Get(*h.Parent).(*simulator.ClusterComputeResource); !ok {
		return &methods.Destroy_TaskBody{Fault_: simulator.Fault("", withMessage(&types.NotSupported{},
			"host %s is standalone: destroy its compute resource instead", h.Name))}
	}
	task := simulator.CreateTask(h.HostSystem, "destroy", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if len(h.Vm) > 0 {
			return nil, withMessage(&types.ResourceInUse{Type: "VirtualMachine", Name: h.Name}, "host %s still has virtual machines", h.Name)
		}
		if h.Runtime.ConnectionState == types.HostSystemConnectionStateConnected && !h.Runtime.InMaintenanceMode {
			return nil, withMessage(&types.InvalidState{}, "host %s must be in maintenance mode or disconnected to be removed", h.Name)
		}
		removeHost(ctx, h.Self)
		return nil, nil
	})
	return &methods.Destroy_TaskBody{Res: &types.Destroy_TaskResponse{Returnval: task.Run(ctx)}}
}

// computeResource adds Destroy_Task to a standalone host's ComputeResource
// (vcsim has no method on it): it removes the host, the root pool and the
// compute resource; refused with ResourceInUse while the host has VMs.
type computeResource struct {
	*mo.ComputeResource
	w *world
}

func (*computeResource) adds() []string { return []string{"Destroy_Task"} }

func (c *computeResource) DestroyTask(ctx *simulator.Context, req *types.Destroy_Task) soap.HasFault {
	return destroyComputeResource(ctx, c.ComputeResource, c.ComputeResource)
}

// removeHost takes a host out of the inventory: its datastore mounts, its
// parent's host list, its config managers, and the host itself.
func removeHost(ctx *simulator.Context, ref types.ManagedObjectReference) {
	h, ok := ctx.Map.Get(ref).(*simulator.HostSystem)
	if !ok {
		return
	}
	for _, dsRef := range h.Datastore {
		if ds, ok := ctx.Map.Get(dsRef).(*simulator.Datastore); ok {
			ctx.WithLock(ds, func() {
				mounts := slices.DeleteFunc(slices.Clone(ds.Host), func(m types.DatastoreHostMount) bool {
					return m.Key == ref
				})
				ctx.Map.Update(ctx, ds, []types.PropertyChange{{Name: "host", Val: mounts}})
			})
		}
	}
	for _, netRef := range h.Network {
		if n, ok := ctx.Map.Get(netRef).(*mo.Network); ok {
			ctx.Map.RemoveReference(ctx, n, &n.Host, ref)
		}
	}
	if c, ok := ctx.Map.Get(*h.Parent).(*simulator.ClusterComputeResource); ok {
		ctx.WithLock(c, func() {
			hosts := slices.DeleteFunc(slices.Clone(c.Host), func(r types.ManagedObjectReference) bool { return r == ref })
			ctx.Map.Update(ctx, c, []types.PropertyChange{{Name: "host", Val: hosts}})
		})
		setEnvironmentBrowserHosts(ctx, c.EnvironmentBrowser, c.Host)
	}
	for _, mgr := range []*types.ManagedObjectReference{h.ConfigManager.DatastoreSystem, h.ConfigManager.NetworkSystem,
		h.ConfigManager.VirtualNicManager, h.ConfigManager.AdvancedOption, h.ConfigManager.FirewallSystem,
		h.ConfigManager.StorageSystem, h.ConfigManager.CertificateManager} {
		if mgr != nil {
			ctx.Map.Remove(ctx, *mgr)
		}
	}
	if _, ok := ctx.Map.Get(h.DatastoreBrowser).(*simulator.HostDatastoreBrowser); ok {
		ctx.Map.Remove(ctx, h.DatastoreBrowser)
	}
	ctx.Map.Remove(ctx, ref)
}

func removePool(ctx *simulator.Context, ref types.ManagedObjectReference) {
	if p, ok := ctx.Map.Get(ref).(*simulator.ResourcePool); ok {
		for _, child := range p.ResourcePool.ResourcePool {
			removePool(ctx, child)
		}
	}
	ctx.Map.Remove(ctx, ref)
}

// datacenterOf is the datacenter an entity is in (nil for none).
func datacenterOf(reg *simulator.Registry, e mo.Entity) *simulator.Datacenter {
	for e != nil {
		if dc, ok := e.(*simulator.Datacenter); ok {
			return dc
		}
		parent := e.Entity().Parent
		if parent == nil {
			return nil
		}
		e, _ = reg.Get(*parent).(mo.Entity)
	}
	return nil
}
