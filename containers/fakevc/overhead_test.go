// Tests of the hypervisor's share: effective figures below the totals, an idle host's usage, and a
// running VM's consumed memory (its memory and its overhead) apart from its configured memory.
package main

import (
	"encoding/json"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// overheadTopology is testTopology with each host of C0 given the default hypervisor share, as
// conformance/topology.py writes it (through the JSON, as fakevc reads it).
func overheadTopology(t *testing.T) *Topology {
	t.Helper()
	data, _ := json.Marshal(testTopology())
	var raw map[string]any
	_ = json.Unmarshal(data, &raw)
	c0 := raw["datacenters"].([]any)[0].(map[string]any)["clusters"].([]any)[0].(map[string]any)
	for _, h := range c0["hosts"].([]any) {
		host := h.(map[string]any)
		o := defaultOverhead(int32(host["cpu_cores"].(float64)), int32(host["cpu_mhz"].(float64)), int64(host["memory_mb"].(float64)))
		host["overhead_cpu_mhz"], host["overhead_memory_mb"] = o.cpuMHz, o.memMB
	}
	data, _ = json.Marshal(raw)
	var topo Topology
	if err := json.Unmarshal(data, &topo); err != nil {
		t.Fatal(err)
	}
	return &topo
}

func TestEffectiveFiguresLeaveOutTheHypervisor(t *testing.T) {
	fv, c := serve(t, overheadTopology(t))
	// C0: H0 (8 cores, 64 GiB) and H1 (16 cores, 128 GiB) are effective; H2 is in maintenance mode, H3
	// disconnected.
	h0, h1 := defaultOverhead(8, 2000, 64*1024), defaultOverhead(16, 2000, 128*1024)
	s := clusterSummary(t, c, ref(t, fv, "ClusterComputeResource", "C0"))
	if s.EffectiveCpu != 2000*24-h0.cpuMHz-h1.cpuMHz || s.EffectiveMemory != (64+128)*1024-h0.memMB-h1.memMB {
		t.Errorf("effective figures %d MHz, %d MB; want the hosts' less the hypervisor's share", s.EffectiveCpu, s.EffectiveMemory)
	}
	if s.EffectiveCpu >= 2000*24 || s.EffectiveMemory*mib >= (64+128)*gib {
		t.Errorf("effective figures are not below the totals: %+v", s.ComputeResourceSummary)
	}
	if h0.memMB != 1024+64*1024/100 || h0.cpuMHz != 8*2000/50 {
		t.Errorf("default overhead %+v", h0)
	}

	// An idle connected host uses its hypervisor's share (in maintenance mode too); a disconnected one
	// reports nothing.
	for name, want := range map[string]overhead{"C0_H0": h0, "C0_H2": defaultOverhead(4, 2000, 16*1024), "C0_H3": {}} {
		qs := hostMO(t, c, hostRef(t, fv, name)).Summary.QuickStats
		if qs.OverallCpuUsage != want.cpuMHz || int64(qs.OverallMemoryUsage) != want.memMB {
			t.Errorf("idle %s: %d MHz, %d MB used; want %+v", name, qs.OverallCpuUsage, qs.OverallMemoryUsage, want)
		}
	}

	// The root pool offers the effective capacity.
	var p mo.ResourcePool
	retrieve(t, c, *clusterByName(t, fv, "C0").ResourcePool, []string{"config"}, &p)
	if *p.Config.MemoryAllocation.Reservation != s.EffectiveMemory || *p.Config.CpuAllocation.Reservation != int64(s.EffectiveCpu) {
		t.Errorf("root pool %+v, cluster %+v", p.Config, s.ComputeResourceSummary)
	}
}

func TestRunningVMConsumesMoreThanItsMemory(t *testing.T) {
	must := tasks{t}.must
	fv, c := serve(t, overheadTopology(t))
	h0 := hostRef(t, fv, "C0_H0")
	spec := vmSpec("consumer", "shared", 4, 8192)
	vm, f := createVM(t, fv, c, "C0", &h0, spec)
	if f != nil {
		t.Fatal(faultText(f))
	}
	must(object.NewVirtualMachine(c.Client, vm).PowerOn(bg))
	var m mo.VirtualMachine
	retrieve(t, c, vm, []string{"summary", "config.hardware.memoryMB"}, &m)
	qs := m.Summary.QuickStats
	overheadMB := vmOverheadMB(4, 8192)
	if qs.HostMemoryUsage != int32(8192+overheadMB) || qs.ConsumedOverheadMemory != int32(overheadMB) ||
		qs.GuestMemoryUsage != 8192/4 {
		t.Errorf("a running 4 vCPU, 8 GB VM: consumed %d, overhead %d, active %d MB", qs.HostMemoryUsage,
			qs.ConsumedOverheadMemory, qs.GuestMemoryUsage)
	}
	if overheadMB < 100 || overheadMB > 200 {
		t.Errorf("a 4 vCPU, 8 GB VM's overhead is %d MB", overheadMB)
	}
	host := hostMO(t, c, h0).Summary.QuickStats
	if int64(host.OverallMemoryUsage) != defaultOverhead(8, 2000, 64*1024).memMB+8192+overheadMB {
		t.Errorf("host memory used %d MB: the hypervisor's share and the VM's consumed memory", host.OverallMemoryUsage)
	}
	// A memory limit caps what the guest consumes.
	limited := vmSpec("limited", "shared", 1, 4096)
	limited.MemoryAllocation = &types.ResourceAllocationInfo{Limit: types.NewInt64(1024)}
	vm2, _ := createVM(t, fv, c, "C0", &h0, limited)
	must(object.NewVirtualMachine(c.Client, vm2).PowerOn(bg))
	retrieve(t, c, vm2, []string{"summary"}, &m)
	if m.Summary.QuickStats.HostMemoryUsage != int32(1024+vmOverheadMB(1, 4096)) {
		t.Errorf("a VM limited to 1 GB consumes %d MB", m.Summary.QuickStats.HostMemoryUsage)
	}
}
