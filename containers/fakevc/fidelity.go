package main

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// fidelity watches objects as they enter and leave the registry. On entry it
// fills in what vcsim leaves empty but a real vCenter always sends (pyvmomi
// refuses an empty enum value, so one such field makes a whole bulk read
// fail); on exit it drops the object's method wrappers.
type fidelity struct {
	ext *extensions
}

func (*fidelity) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "FakevcFidelity", Value: "fidelity"}
}

func (*fidelity) PutObject(_ *simulator.Context, obj mo.Reference) {
	switch o := obj.(type) {
	case *simulator.VirtualMachine:
		// vcsim sends faultToleranceState="" and recordReplayState="" for a
		// VM made by CreateVM_Task.
		for _, rt := range []*types.VirtualMachineRuntimeInfo{&o.Runtime, &o.Summary.Runtime} {
			if rt.FaultToleranceState == "" {
				rt.FaultToleranceState = types.VirtualMachineFaultToleranceStateNotConfigured
			}
			if rt.RecordReplayState == "" {
				rt.RecordReplayState = types.VirtualMachineRecordReplayStateInactive
			}
		}
	case *simulator.ClusterComputeResource:
		// vcsim sends summary.overallStatus="" for a cluster with no host.
		if s, ok := o.Summary.(*types.ClusterComputeResourceSummary); ok && s.OverallStatus == "" {
			s.OverallStatus = types.ManagedEntityStatusGreen
		}
	}
}

func (*fidelity) UpdateObject(*simulator.Context, mo.Reference, []types.PropertyChange) {}

func (f *fidelity) RemoveObject(ctx *simulator.Context, ref types.ManagedObjectReference) {
	f.ext.forget(ctx, ref)
}
