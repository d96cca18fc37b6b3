// Tests of usage accounting: host and VM quickStats, the cluster usage summary, resource pool runtime and
// datastore space follow the VMs' life cycle, by their configured CPU, memory and disks.
package main

import (
	"context"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const gib = int64(1) << 30

type usage struct {
	hostCPU, hostMemMB       int32
	clusterCPU, clusterMemMB int32
	poolCPU, poolMemBytes    int64
	dsFree, dsUncommitted    int64
	vmCPU, vmMemMB           int32
}

func readUsage(t *testing.T, fv *fakevc, c *govmomi.Client, vm types.ManagedObjectReference) usage {
	t.Helper()
	var u usage
	h := hostMO(t, c, hostRef(t, fv, "C0_H0"))
	u.hostCPU, u.hostMemMB = h.Summary.QuickStats.OverallCpuUsage, h.Summary.QuickStats.OverallMemoryUsage
	cl := ref(t, fv, "ClusterComputeResource", "C0")
	if us := clusterSummary(t, c, cl).UsageSummary; us != nil {
		u.clusterCPU, u.clusterMemMB = us.CpuDemandMhz, us.MemDemandMB
	}
	var p mo.ResourcePool
	retrieve(t, c, *fv.reg().Get(cl).(*simulator.ClusterComputeResource).ResourcePool, []string{"runtime"}, &p)
	u.poolCPU, u.poolMemBytes = p.Runtime.Cpu.OverallUsage, p.Runtime.Memory.OverallUsage
	var ds mo.Datastore
	retrieve(t, c, ref(t, fv, "Datastore", "shared"), []string{"summary"}, &ds)
	u.dsFree, u.dsUncommitted = ds.Summary.FreeSpace, ds.Summary.Uncommitted
	if vm.Value != "" {
		var m mo.VirtualMachine
		retrieve(t, c, vm, []string{"summary"}, &m)
		u.vmCPU, u.vmMemMB = m.Summary.QuickStats.OverallCpuUsage, m.Summary.QuickStats.HostMemoryUsage
	}
	return u
}

func TestUsageFollowsTheVMLifeCycle(t *testing.T) {
	must := tasks{t}.must
	fv, c := serve(t, testTopology())
	h0 := hostRef(t, fv, "C0_H0")
	idle := readUsage(t, fv, c, types.ManagedObjectReference{})
	if idle != (usage{dsFree: 512 * gib}) {
		t.Fatalf("an idle inventory: %+v", idle)
	}

	spec := vmSpec("app", "shared", 2, 4096, disk{gb: 10}, disk{gb: 20, thin: true})
	spec.MemoryAllocation = &types.ResourceAllocationInfo{Reservation: types.NewInt64(1024)}
	vm, f := createVM(t, fv, c, "C0", &h0, spec)
	if f != nil {
		t.Fatal(faultText(f))
	}
	created := readUsage(t, fv, c, vm)
	// A powered-off VM uses no CPU or memory; its thick disk takes space, its thin disk is uncommitted.
	if created != (usage{dsFree: 502 * gib, dsUncommitted: 20 * gib}) {
		t.Errorf("after CreateVM: %+v", created)
	}

	must(object.NewVirtualMachine(c.Client, vm).PowerOn(bg))
	on := readUsage(t, fv, c, vm)
	// 2 vCPUs at the host's 2,000 MHz; 4,096 MB and the VM's overhead consumed; the swap file is memory
	// less the 1,024 MB reservation.
	consumed := int32(4096 + vmOverheadMB(2, 4096))
	want := usage{hostCPU: 4000, hostMemMB: consumed, clusterCPU: 4000, clusterMemMB: consumed, poolCPU: 4000,
		poolMemBytes: int64(consumed) << 20, dsFree: 502*gib - 3072<<20, dsUncommitted: 20 * gib, vmCPU: 4000, vmMemMB: consumed}
	if on != want {
		t.Errorf("after PowerOn\n got %+v\nwant %+v", on, want)
	}
	s := clusterSummary(t, c, ref(t, fv, "ClusterComputeResource", "C0")).UsageSummary
	if s.MemReservationMB != 1024 || s.TotalCpuCapacityMhz != 2000*24 || s.TotalMemCapacityMB != 192*1024 || s.TotalVmCount != 1 {
		t.Errorf("cluster usage summary: %+v", s)
	}
	var p mo.ResourcePool
	retrieve(t, c, *fv.reg().Get(ref(t, fv, "ClusterComputeResource", "C0")).(*simulator.ClusterComputeResource).ResourcePool,
		[]string{"runtime", "config", "summary"}, &p)
	if m := p.Runtime.Memory; m.ReservationUsed != 1024<<20 || m.MaxUsage != 192*gib || m.UnreservedForVm != 192*gib-1024<<20 {
		t.Errorf("root pool memory: %+v", m)
	}
	if p.Runtime.Cpu.MaxUsage != 48000 || *p.Config.CpuAllocation.Reservation != 48000 || *p.Config.MemoryAllocation.Limit != 192*1024 {
		t.Errorf("root pool cpu %+v, config %+v", p.Runtime.Cpu, p.Config)
	}
	if qs := p.Summary.GetResourcePoolSummary().QuickStats; qs.OverallCpuUsage != 4000 || qs.HostMemoryUsage != int64(consumed) {
		t.Errorf("root pool quickStats: %+v", qs)
	}

	must(object.NewVirtualMachine(c.Client, vm).PowerOff(bg))
	if off := readUsage(t, fv, c, vm); off != created {
		t.Errorf("after PowerOff\n got %+v\nwant %+v", off, created)
	}
	must(object.NewVirtualMachine(c.Client, vm).Destroy(bg))
	if gone := readUsage(t, fv, c, types.ManagedObjectReference{}); gone != idle {
		t.Errorf("after Destroy\n got %+v\nwant %+v", gone, idle)
	}
}

// A filter on a datastore's free space hears every change, also those vcsim
// writes itself (it adds a removed disk's size back without telling filters).
func TestFreeSpaceChangesReachFilters(t *testing.T) {
	must := tasks{t}.must
	fv, c := serve(t, testTopology())
	ds := ref(t, fv, "Datastore", "shared")
	var before mo.Datastore
	retrieve(t, c, ds, []string{"summary.freeSpace"}, &before)
	vm, f := createVM(t, fv, c, "C0", nil, vmSpec("disk", "shared", 1, 4096, disk{gb: 8}))
	if f != nil {
		t.Fatal(faultText(f))
	}
	must(object.NewVirtualMachine(c.Client, vm).PowerOn(bg))
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	watching, done := make(chan struct{}), make(chan error, 1)
	var heard []int64
	go func() {
		done <- property.Wait(ctx, property.DefaultCollector(c.Client), ds, []string{"summary.freeSpace"},
			func(changes []types.PropertyChange) bool {
				for _, ch := range changes {
					if v, ok := ch.Val.(int64); ok {
						heard = append(heard, v)
					}
				}
				if len(heard) == 1 {
					close(watching) // the filter exists and has sent the current value
				}
				return len(heard) > 1 && heard[len(heard)-1] == before.Summary.FreeSpace
			})
	}()
	select {
	case <-watching:
	case err := <-done:
		t.Fatalf("wait ended before the destroy: %v", err)
	}
	must(object.NewVirtualMachine(c.Client, vm).PowerOff(bg))
	must(object.NewVirtualMachine(c.Client, vm).Destroy(bg))
	if err := <-done; err != nil {
		t.Errorf("free space heard %v, never back at %d: %v", heard, before.Summary.FreeSpace, err)
	}
}
