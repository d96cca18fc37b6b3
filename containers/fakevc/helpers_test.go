// Helpers shared by the Go tests: finding objects, reading properties over SOAP, waiting for tasks.
package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

var bg = context.Background()

// ref finds the one entity of a type with a name in the current world.
func ref(t *testing.T, fv *fakevc, kind, name string) types.ManagedObjectReference {
	t.Helper()
	var found []types.ManagedObjectReference
	for _, e := range fv.reg().All(kind) {
		if e.Entity().Name == name {
			found = append(found, e.Reference())
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s named %q", len(found), kind, name)
	}
	return found[0]
}

// hostRef finds a host by name.
func hostRef(t *testing.T, fv *fakevc, name string) types.ManagedObjectReference {
	t.Helper()
	return ref(t, fv, "HostSystem", name)
}

// retrieve reads properties over SOAP, as a client does (so the derived
// state is synced first, as for any client).
func retrieve(t *testing.T, c *govmomi.Client, obj types.ManagedObjectReference, props []string, dst any) {
	t.Helper()
	if err := property.DefaultCollector(c.Client).RetrieveOne(bg, obj, props, dst); err != nil {
		t.Fatalf("retrieve %s %v: %v", obj, props, err)
	}
}

func clusterSummary(t *testing.T, c *govmomi.Client, cl types.ManagedObjectReference) *types.ClusterComputeResourceSummary {
	t.Helper()
	var m mo.ClusterComputeResource
	retrieve(t, c, cl, []string{"summary"}, &m)
	return m.Summary.(*types.ClusterComputeResourceSummary)
}

func hostMO(t *testing.T, c *govmomi.Client, h types.ManagedObjectReference) mo.HostSystem {
	t.Helper()
	var m mo.HostSystem
	retrieve(t, c, h, []string{"name", "parent", "runtime", "summary", "vm", "datastore"}, &m)
	return m
}

// tasks waits for tasks on behalf of a test. Its methods take a call's
// results as they are, e.g. fails(host.Destroy(ctx)).
type tasks struct{ t *testing.T }

// fault waits for a task and returns its fault (nil on success); a call
// that fails before a task exists returns the call's fault.
func (x tasks) fault(task *object.Task, err error) types.BaseMethodFault {
	x.t.Helper()
	if err != nil {
		if f := soapFault(err); f != nil {
			return f
		}
		x.t.Fatal(err)
	}
	if err := task.Wait(bg); err != nil {
		if f := taskFault(err); f != nil {
			return f
		}
		x.t.Fatal(err)
	}
	return nil
}

// must waits for a task that must succeed.
func (x tasks) must(task *object.Task, err error) {
	x.t.Helper()
	if f := x.fault(task, err); f != nil {
		x.t.Fatalf("task failed: %T %s", f, faultText(f))
	}
}

// soapFault is the vSphere fault of a failed call or task, or nil.
func soapFault(err error) types.BaseMethodFault {
	if f := taskFault(err); f != nil {
		return f
	}
	if soap.IsSoapFault(err) {
		if f, ok := soap.ToSoapFault(err).VimFault().(types.BaseMethodFault); ok {
			return f
		}
	}
	return nil
}

// vmSpec is a VM with CPUs, memory and disks on datastore ds.
func vmSpec(name, ds string, cpus int32, memMB int64, disks ...disk) types.VirtualMachineConfigSpec {
	spec := types.VirtualMachineConfigSpec{Name: name, NumCPUs: cpus, MemoryMB: memMB,
		Files: &types.VirtualMachineFileInfo{VmPathName: "[" + ds + "]"}}
	var devices object.VirtualDeviceList
	scsi, _ := devices.CreateSCSIController("pvscsi")
	devices = append(devices, scsi)
	for i, d := range disks {
		target := ds
		if d.ds != "" {
			target = d.ds
		}
		disk := devices.CreateDisk(scsi.(types.BaseVirtualController), types.ManagedObjectReference{},
			fmt.Sprintf("[%s] %s/disk%d.vmdk", target, name, i))
		disk.CapacityInKB = d.gb * 1024 * 1024
		// object.CreateDisk makes a thin disk.
		disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo).ThinProvisioned = types.NewBool(d.thin)
		devices = append(devices, disk)
	}
	spec.DeviceChange, _ = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	for _, c := range spec.DeviceChange {
		if _, ok := c.GetVirtualDeviceConfigSpec().Device.(*types.VirtualDisk); ok {
			c.GetVirtualDeviceConfigSpec().FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate
		}
	}
	return spec
}

type disk struct {
	gb   int64
	thin bool
	ds   string
}

// createVM creates a VM in the pool of cluster cl (and on host, when given).
func createVM(t *testing.T, fv *fakevc, c *govmomi.Client, cl string, host *types.ManagedObjectReference,
	spec types.VirtualMachineConfigSpec) (types.ManagedObjectReference, types.BaseMethodFault) {
	t.Helper()
	dc := fv.reg().Get(ref(t, fv, "Datacenter", "DC0")).(*simulator.Datacenter)
	pool := *fv.reg().Get(ref(t, fv, "ClusterComputeResource", cl)).(*simulator.ClusterComputeResource).ResourcePool
	folder := object.NewFolder(c.Client, dc.VmFolder)
	var h *object.HostSystem
	if host != nil {
		h = object.NewHostSystem(c.Client, *host)
	}
	task, err := folder.CreateVM(bg, spec, object.NewResourcePool(c.Client, pool), h)
	if f := (tasks{t}).fault(task, err); f != nil {
		return types.ManagedObjectReference{}, f
	}
	info, err := task.WaitForResult(bg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return info.Result.(types.ManagedObjectReference), nil
}
