package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

const mib = int64(1024 * 1024)

// build creates the topology's inventory in a freshly created, empty model.
// It goes through the simulator's own SOAP methods (in process, no network),
// so every object is wired the way vcsim wires it, then overwrites the
// figures vcsim cannot take from a spec: host hardware and state, datastore
// type and size, and the derived summaries.
func build(ctx context.Context, m *simulator.Model, t *Topology, dsRoot string) error {
	c, err := vim25.NewClient(ctx, m.Service)
	if err != nil {
		return err
	}
	reg := m.Map()
	root := object.NewRootFolder(c)

	for _, dcSpec := range t.Datacenters {
		dc, err := root.CreateDatacenter(ctx, dcSpec.Name)
		if err != nil {
			return fmt.Errorf("datacenter %q: %w", dcSpec.Name, err)
		}
		folders, err := dc.Folders(ctx)
		if err != nil {
			return err
		}
		hosts := map[string]*simulator.HostSystem{}

		addHost := func(spec Host, add func(types.HostConnectSpec) (*object.Task, error)) error {
			task, err := add(types.HostConnectSpec{HostName: spec.Name})
			if err != nil {
				return fmt.Errorf("host %q: %w", spec.Name, err)
			}
			info, err := task.WaitForResult(ctx, nil)
			if err != nil {
				return fmt.Errorf("host %q: %w", spec.Name, err)
			}
			h := reg.Get(info.Result.(types.ManagedObjectReference)).(*simulator.HostSystem)
			setHostHardware(h, spec)
			hosts[spec.Name] = h
			return nil
		}

		for _, cs := range dcSpec.Clusters {
			cl, err := folders.HostFolder.CreateCluster(ctx, cs.Name, types.ClusterConfigSpecEx{})
			if err != nil {
				return fmt.Errorf("cluster %q: %w", cs.Name, err)
			}
			for _, hs := range cs.Hosts {
				err := addHost(hs, func(s types.HostConnectSpec) (*object.Task, error) {
					return cl.AddHost(ctx, s, true, nil, nil)
				})
				if err != nil {
					return err
				}
			}
		}
		for _, hs := range dcSpec.StandaloneHosts {
			err := addHost(hs, func(s types.HostConnectSpec) (*object.Task, error) {
				return folders.HostFolder.AddStandaloneHost(ctx, s, true, nil, nil)
			})
			if err != nil {
				return err
			}
		}

		for _, ds := range dcSpec.Datastores {
			dir := filepath.Join(dsRoot, dcSpec.Name, ds.Name)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			var ref types.ManagedObjectReference
			for _, name := range ds.Hosts {
				h := hosts[name]
				dss := object.NewHostDatastoreSystem(c, *h.ConfigManager.DatastoreSystem)
				created, err := dss.CreateLocalDatastore(ctx, ds.Name, dir)
				if err != nil {
					return fmt.Errorf("datastore %q on host %q: %w", ds.Name, name, err)
				}
				if ref.Value == "" { // vcsim returns an empty ref when the host joins an existing datastore
					ref = created.Reference()
				}
			}
			if len(ds.Hosts) > 0 {
				setDatastoreFigures(reg.Get(ref).(*simulator.Datastore), ds)
			}
		}
	}

	for _, obj := range reg.All("ClusterComputeResource") {
		recomputeCluster(reg, obj.(*simulator.ClusterComputeResource))
	}
	return nil
}

// setHostHardware gives a host the size and state the topology asks for.
// vcsim clones every host from one template (2 cores, 4 GiB).
func setHostHardware(h *simulator.HostSystem, s Host) {
	hw := h.Summary.Hardware // a per-host copy (simulator.NewHostSystem)
	hw.NumCpuPkgs = s.CPUSockets
	hw.NumCpuCores = s.CPUCores
	hw.NumCpuThreads = s.CPUThreads
	hw.CpuMhz = s.CPUMhz
	hw.MemorySize = s.MemoryMB * mib

	info := h.Hardware // a per-host shallow copy; replace, never mutate, its slices
	info.CpuInfo = types.HostCpuInfo{
		NumCpuPackages: s.CPUSockets,
		NumCpuCores:    s.CPUCores,
		NumCpuThreads:  s.CPUThreads,
		Hz:             int64(s.CPUMhz) * 1_000_000,
	}
	info.MemorySize = s.MemoryMB * mib

	h.Runtime.ConnectionState = types.HostSystemConnectionState(s.ConnectionState)
	h.Runtime.InMaintenanceMode = s.Maintenance
	// An idle host: usage starts at zero and moves only with VMs.
	h.Summary.QuickStats.OverallCpuUsage = 0
	h.Summary.QuickStats.OverallMemoryUsage = 0
}

// setDatastoreFigures gives a datastore the type and size the topology asks
// for; vcsim makes every datastore type OTHER and 1 TB per mounting host.
func setDatastoreFigures(d *simulator.Datastore, s Datastore) {
	d.Summary.Type = s.Type
	d.Summary.Capacity = s.CapacityMB * mib
	d.Summary.FreeSpace = s.FreeMB * mib
	info := d.Info.GetDatastoreInfo()
	info.FreeSpace = d.Summary.FreeSpace
	info.MaxFileSize = d.Summary.Capacity
	info.MaxMemoryFileSize = d.Summary.Capacity
}

// recomputeCluster derives a cluster's summary from its hosts, as vCenter
// does: totals count every host, effective figures only connected hosts that
// are not in maintenance mode. totalCpu is MHz × cores (vcsim adds MHz once
// per host) and effectiveMemory is in MB (vcsim adds bytes). An empty cluster
// is green, not "" (which pyvmomi cannot parse).
func recomputeCluster(reg *simulator.Registry, cl *simulator.ClusterComputeResource) {
	s := cl.Summary.(*types.ClusterComputeResourceSummary)
	cs := &s.ComputeResourceSummary
	*cs = types.ComputeResourceSummary{OverallStatus: types.ManagedEntityStatusGreen}
	for _, ref := range cl.Host {
		h := reg.Get(ref).(*simulator.HostSystem)
		hw := h.Summary.Hardware
		cs.NumHosts++
		cs.NumCpuCores += hw.NumCpuCores
		cs.NumCpuThreads += hw.NumCpuThreads
		cs.TotalCpu += hw.CpuMhz * int32(hw.NumCpuCores)
		cs.TotalMemory += hw.MemorySize
		if h.Runtime.ConnectionState == types.HostSystemConnectionStateConnected && !h.Runtime.InMaintenanceMode {
			cs.NumEffectiveHosts++
			cs.EffectiveCpu += hw.CpuMhz * int32(hw.NumCpuCores)
			cs.EffectiveMemory += hw.MemorySize / mib
		}
	}
}
