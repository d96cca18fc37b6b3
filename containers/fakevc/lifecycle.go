package main

import (
	"slices"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// cluster adds Destroy_Task to vcsim's ClusterComputeResource.
type cluster struct {
	*simulator.ClusterComputeResource
}

func (*cluster) adds() []string { return []string{"Destroy_Task"} }

// DestroyTask removes the cluster with its hosts and resource pools, as
// vCenter does. Choice: while any VM lives on one of its hosts the call fails
// with ResourceInUse (vcsim's HostSystem.Destroy_Task rule), so no VM is ever
// left without a host.
func (c *cluster) DestroyTask(ctx *simulator.Context, req *types.Destroy_Task) soap.HasFault {
	task := simulator.CreateTask(c.ClusterComputeResource, "destroy", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		for _, ref := range c.Host {
			if h, ok := ctx.Map.Get(ref).(*simulator.HostSystem); ok && len(h.Vm) > 0 {
				return nil, &types.ResourceInUse{Type: "VirtualMachine", Name: h.Name}
			}
		}
		for _, ref := range slices.Clone(c.Host) {
			removeHost(ctx, ref)
		}
		removePool(ctx, *c.ResourcePool)
		if c.EnvironmentBrowser != nil {
			ctx.Map.Remove(ctx, *c.EnvironmentBrowser)
		}
		if f, ok := ctx.Map.Get(*c.Parent).(*simulator.Folder); ok {
			ctx.Map.RemoveReference(ctx, f, &f.ChildEntity, c.Self)
		}
		ctx.Map.Remove(ctx, c.Self)
		return nil, nil
	})
	return &methods.Destroy_TaskBody{Res: &types.Destroy_TaskResponse{Returnval: task.Run(ctx)}}
}

// removeHost takes a host out of the inventory: its datastore mounts and
// network memberships, its parent's host list, and the host itself.
func removeHost(ctx *simulator.Context, ref types.ManagedObjectReference) {
	h, ok := ctx.Map.Get(ref).(*simulator.HostSystem)
	if !ok {
		return
	}
	for _, dsRef := range h.Datastore {
		if ds, ok := ctx.Map.Get(dsRef).(*simulator.Datastore); ok {
			mounts := slices.DeleteFunc(slices.Clone(ds.Host), func(m types.DatastoreHostMount) bool {
				return m.Key == ref
			})
			ctx.Map.Update(ctx, ds, []types.PropertyChange{{Name: "host", Val: mounts}})
		}
	}
	for _, netRef := range h.Network {
		if n, ok := ctx.Map.Get(netRef).(*mo.Network); ok {
			ctx.Map.RemoveReference(ctx, n, &n.Host, ref)
		}
	}
	if c, ok := ctx.Map.Get(*h.Parent).(*simulator.ClusterComputeResource); ok {
		ctx.Map.RemoveReference(ctx, c, &c.Host, ref)
	}
	for _, mgr := range []*types.ManagedObjectReference{h.ConfigManager.DatastoreSystem, h.ConfigManager.NetworkSystem,
		h.ConfigManager.VirtualNicManager, h.ConfigManager.AdvancedOption, h.ConfigManager.FirewallSystem,
		h.ConfigManager.StorageSystem, h.ConfigManager.CertificateManager} {
		if mgr != nil {
			ctx.Map.Remove(ctx, *mgr)
		}
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
