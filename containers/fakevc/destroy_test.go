// Tests of folder destroy: a datacenter's own folders and the root are refused, a folder of VMs goes with
// its VMs, a folder holding a cluster is refused (vcsim killed the process or orphaned the children).
package main

import (
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

func TestDestroyFolder(t *testing.T) {
	must := tasks{t}.must
	fv, c := serve(t, testTopology())
	dc := fv.reg().Get(ref(t, fv, "Datacenter", "DC0")).(*simulator.Datacenter)
	for _, f := range []types.ManagedObjectReference{dc.VmFolder, dc.HostFolder, c.ServiceContent.RootFolder} {
		task, err := object.NewFolder(c.Client, f).Destroy(bg)
		if got := faultName(t, task, err); got != "NotSupported" {
			t.Errorf("destroy %s: %q, want NotSupported", f, got)
		}
	}
	vmFolder := object.NewFolder(c.Client, dc.VmFolder)
	apps, err := vmFolder.CreateFolder(bg, "apps")
	if err != nil {
		t.Fatal(err)
	}
	inner, _ := apps.CreateFolder(bg, "inner")
	h0 := hostRef(t, fv, "C0_H0")
	pool := object.NewResourcePool(c.Client, *clusterByName(t, fv, "C0").ResourcePool)
	task, err := inner.CreateVM(bg, vmSpec("in-folder", "shared", 1, 256), pool, object.NewHostSystem(c.Client, h0))
	must(task, err)
	info, _ := task.WaitForResult(bg, nil)
	vm := object.NewVirtualMachine(c.Client, info.Result.(types.ManagedObjectReference))
	must(vm.PowerOn(bg))
	if task, err := apps.Destroy(bg); faultName(t, task, err) != "InvalidPowerState" {
		t.Error("a folder with a powered-on VM was destroyed")
	}
	must(vm.PowerOff(bg))
	must(apps.Destroy(bg))
	for _, gone := range []types.ManagedObjectReference{apps.Reference(), inner.Reference(), vm.Reference()} {
		if fv.reg().Get(gone) != nil {
			t.Errorf("%s is still in the inventory", gone)
		}
	}
	hostFolder := object.NewFolder(c.Client, dc.HostFolder)
	prod, _ := hostFolder.CreateFolder(bg, "prod")
	if _, err := prod.CreateCluster(bg, "inside", types.ClusterConfigSpecEx{}); err != nil {
		t.Fatal(err)
	}
	if task, err := prod.Destroy(bg); faultName(t, task, err) != "ResourceInUse" {
		t.Error("a folder holding a cluster was destroyed")
	}
}
