// Destroying folders with vCenter's rules (vcsim's Folder.Destroy_Task kills
// the process for a datacenter's own folders and orphans every child).
package main

import (
	"slices"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// DestroyTask destroys a folder with what it holds. vcsim's panics (ending
// the process) on the root folder and a datacenter's vm, host, datastore and
// network folders, and skips every child it holds (their Destroy_Task
// methods take a context its check does not expect), leaving them in the
// inventory without a parent. vCenter refuses the root and a datacenter's
// folders (NotSupported) and destroys the contents. Choice: fakevc destroys
// folders of VMs and folders only (a powered-on VM: InvalidPowerState), and
// refuses a folder holding anything else (clusters, hosts, datacenters,
// datastores, networks) with ResourceInUse: destroy or move those first.
func (f *folder) DestroyTask(ctx *simulator.Context, req *types.Destroy_Task) soap.HasFault {
	task := simulator.CreateTask(f.Folder, "destroy", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if _, ok := ctx.Map.Get(ptrOr(f.Parent)).(*simulator.Folder); !ok {
			return nil, withMessage(&types.NotSupported{}, "folder %s belongs to its datacenter (or is the root): it cannot be destroyed", f.Name)
		}
		var vms []*simulator.VirtualMachine
		var folders []*simulator.Folder
		var walk func(*simulator.Folder) types.BaseMethodFault
		walk = func(x *simulator.Folder) types.BaseMethodFault {
			folders = append(folders, x)
			for _, ref := range x.ChildEntity {
				switch c := ctx.Map.Get(ref).(type) {
				case *simulator.Folder:
					if f := walk(c); f != nil {
						return f
					}
				case *simulator.VirtualMachine:
					if c.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
						return withMessage(&types.InvalidPowerState{RequestedState: types.VirtualMachinePowerStatePoweredOff,
							ExistingState: c.Runtime.PowerState}, "VM %s in folder %s is powered on", c.Name, x.Name)
					}
					vms = append(vms, c)
				case mo.Entity:
					return withMessage(&types.ResourceInUse{Type: ref.Type, Name: c.Entity().Name},
						"folder %s holds %s %s: destroy or move it first", x.Name, ref.Type, c.Entity().Name)
				}
			}
			return nil
		}
		if fault := walk(f.Folder); fault != nil {
			return nil, fault
		}
		for _, vm := range vms {
			res := vm.DestroyTask(ctx, &types.Destroy_Task{This: vm.Self}).(*methods.Destroy_TaskBody)
			if t, ok := ctx.Map.Get(res.Res.Returnval).(*simulator.Task); ok {
				t.Wait()
				if t.Info.Error != nil {
					return nil, t.Info.Error.Fault
				}
			}
		}
		slices.Reverse(folders) // children first
		for _, x := range folders {
			removeChild(ctx, ptrOr(x.Parent), x.Self)
			ctx.Map.Remove(ctx, x.Self)
		}
		return nil, nil
	})
	return &methods.Destroy_TaskBody{Res: &types.Destroy_TaskResponse{Returnval: task.Run(ctx)}}
}
