// Registry hooks: fill in what vcsim leaves wrong on objects as they enter
// the inventory, name tasks as vCenter does, and tell the deriver what changed.
package main

import (
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// fidelity watches objects as they enter, change and leave the registry.
type fidelity struct {
	ext *extensions
	d   *deriver
}

func (*fidelity) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "FakevcFidelity", Value: "fidelity"}
}

func (f *fidelity) PutObject(ctx *simulator.Context, obj mo.Reference) {
	switch o := obj.(type) {
	case *simulator.VirtualMachine:
		f.d.creating.Store(o.Self, struct{}{})
		// vcsim sends faultToleranceState="" and recordReplayState="" for a
		// VM made by CreateVM_Task; pyvmomi refuses an empty enum value, so
		// one such field makes a whole bulk read fail.
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
	case *simulator.ResourcePool:
		// Every vcsim pool points at one shared summary (the ESX template's):
		// give each its own, named after it, with quickStats to publish into.
		s := types.ResourcePoolSummary{Name: o.Name, Config: o.Config, Runtime: o.Runtime,
			QuickStats: &types.ResourcePoolQuickStats{}}
		if old, ok := o.Summary.(*types.ResourcePoolSummary); ok {
			s.ConfiguredMemoryMB = old.ConfiguredMemoryMB
		}
		self := o.Self
		o.Config.Entity = &self
		s.Config.Entity = &self
		o.Summary = &s
	}
	for _, pc := range f.ext.collectorList() {
		pc.PutObject(ctx, obj)
	}
	f.d.touch(ctx)
}

func (f *fidelity) UpdateObject(ctx *simulator.Context, obj mo.Reference, changes []types.PropertyChange) {
	switch o := obj.(type) {
	case *mo.Task:
		f.task(ctx, o, changes)
	case *mo.VirtualMachine:
		// vcsim's VM creation (whatever calls it) ends by publishing the name.
		for _, c := range changes {
			if c.Name == "name" {
				f.d.creating.Delete(o.Self)
			}
		}
	}
	for _, pc := range f.ext.collectorList() {
		pc.UpdateObject(ctx, obj, changes)
	}
	f.d.touch(ctx)
}

// task names a task after the SOAP method that created it (vcsim names it
// after its Go method: "CreateVm", "PowerOn"; vCenter sends the method name,
// "CreateVM_Task", which pyVim.task.WaitForTask needs), and gives a failed
// task a readable message (vcsim puts the Go type, "*types.InvalidState").
// The changes' values are shared with the collectors notified before this
// hook, so they are edited in place.
func (f *fidelity) task(ctx *simulator.Context, t *mo.Task, changes []types.PropertyChange) {
	for i, c := range changes {
		switch c.Name {
		case "info.state":
			if c.Val == types.TaskInfoStateRunning && ctx != nil && ctx.Context != nil {
				if name, ok := ctx.Context.Value(methodKey{}).(string); ok && strings.HasSuffix(name, "_Task") {
					t.Info.Name = name
				}
			}
		case "info.result":
			// A task that made a VM (CreateVM, RegisterVM, CloneVM) is done
			// with it.
			if ref, ok := c.Val.(types.ManagedObjectReference); ok && ref.Type == "VirtualMachine" {
				f.d.creating.Delete(ref)
			}
		case "info.error":
			if lmf, ok := c.Val.(types.LocalizedMethodFault); ok && strings.HasPrefix(lmf.LocalizedMessage, "*types.") {
				lmf.LocalizedMessage = faultText(lmf.Fault)
				changes[i].Val = lmf
				if t.Info.Error != nil {
					t.Info.Error.LocalizedMessage = lmf.LocalizedMessage
				}
			}
		}
	}
}

func (f *fidelity) RemoveObject(ctx *simulator.Context, ref types.ManagedObjectReference) {
	f.d.creating.Delete(ref)
	f.ext.forget(ctx, ref)
	for _, pc := range f.ext.collectorList() {
		pc.RemoveObject(ctx, ref)
	}
	f.d.touch(ctx)
}
