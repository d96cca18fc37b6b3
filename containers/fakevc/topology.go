// Normalized topology: the JSON that conformance/topology.py writes, and the
// few invariants this program relies on.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

// Topology is the normalized inventory description that the Python side
// (conformance/topology.py) writes from a fixtures/topologies/*.yaml file.
// Every default is already filled in and every count is expanded, so this
// program only checks the few invariants it relies on.
type Topology struct {
	Name        string       `json:"name"`
	Source      string       `json:"source"`
	Datacenters []Datacenter `json:"datacenters"`
	// PageSize is the most objects one RetrievePropertiesEx answer holds
	// (0: vCenter's 100); the control API can change it.
	PageSize int `json:"page_size"`
}

// Datacenter holds clusters, standalone hosts and datastores. Folder is the
// path of folders under the root folder that holds it (empty: the root).
type Datacenter struct {
	Name            string      `json:"name"`
	Folder          []string    `json:"folder"`
	Clusters        []Cluster   `json:"clusters"`
	StandaloneHosts []Host      `json:"standalone_hosts"`
	Datastores      []Datastore `json:"datastores"`
}

// Cluster is a ClusterComputeResource with its hosts. Folder is the path of
// folders under the datacenter's host folder that holds it. ResourcePools
// are paths of pools below the cluster's root pool ("nova", "tenants/nova");
// the pools on the way are created too.
type Cluster struct {
	Name          string   `json:"name"`
	Folder        []string `json:"folder"`
	Hosts         []Host   `json:"hosts"`
	ResourcePools []string `json:"resource_pools"`
}

// Host is one ESXi host and its hardware. MemoryBytes, when set, is the
// exact memory size (real hosts are rarely a whole number of MiB); otherwise
// it is MemoryMB MiB.
type Host struct {
	Name            string `json:"name"`
	CPUSockets      int16  `json:"cpu_sockets"`
	CPUCores        int16  `json:"cpu_cores"`
	CPUThreads      int16  `json:"cpu_threads"`
	CPUMhz          int32  `json:"cpu_mhz"`
	MemoryMB        int64  `json:"memory_mb"`
	MemoryBytes     int64  `json:"memory_bytes"`
	ConnectionState string `json:"connection_state"`
	Maintenance     bool   `json:"maintenance"`
	// The hypervisor's share (MHz, MB): out of the cluster's effective
	// figures, and in use on a connected host that runs no VM.
	OverheadCPUMhz   int32 `json:"overhead_cpu_mhz"`
	OverheadMemoryMB int64 `json:"overhead_memory_mb"`
}

// Datastore is mounted by the named hosts of its datacenter. Accessible
// (nil: true) and Maintenance (summary.maintenanceMode; "": normal) are its
// state as loaded; the control API changes them at run time.
type Datastore struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	CapacityMB  int64    `json:"capacity_mb"`
	FreeMB      int64    `json:"free_mb"`
	Hosts       []string `json:"hosts"`
	Accessible  *bool    `json:"accessible"`
	Maintenance string   `json:"maintenance"`
}

// accessible is the datastore's summary.accessible as loaded.
func (d Datastore) accessible() bool { return d.Accessible == nil || *d.Accessible }

// maintenanceMode is the datastore's summary.maintenanceMode as loaded.
func (d Datastore) maintenanceMode() string {
	if d.Maintenance == "" {
		return string(types.DatastoreSummaryMaintenanceModeStateNormal)
	}
	return d.Maintenance
}

// hostMemory is a host's memory size in bytes.
func (h Host) hostMemory() int64 {
	if h.MemoryBytes > 0 {
		return h.MemoryBytes
	}
	return h.MemoryMB * mib
}

// loadTopology reads and checks a normalized topology file.
func loadTopology(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var t Topology
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("%s: not a normalized topology: %v", path, err)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("%s: %v", t.Source, err)
	}
	return &t, nil
}

func (t *Topology) check() error {
	if t.PageSize < 0 {
		return fmt.Errorf("page_size %d: expected a whole number >= 1", t.PageSize)
	}
	hosts := map[string]bool{}
	for _, dc := range t.Datacenters {
		if dc.Name == "" {
			return fmt.Errorf("datacenter without a name")
		}
		if err := checkFolder(dc.Folder); err != nil {
			return fmt.Errorf("datacenter %q: %v", dc.Name, err)
		}
		for _, c := range dc.Clusters {
			if err := checkFolder(c.Folder); err != nil {
				return fmt.Errorf("cluster %q: %v", c.Name, err)
			}
			for _, p := range c.ResourcePools {
				if err := checkFolder(strings.Split(p, "/")); err != nil {
					return fmt.Errorf("cluster %q: resource pool %q: %v", c.Name, p, err)
				}
			}
		}
		all := append([]Host{}, dc.StandaloneHosts...)
		for _, c := range dc.Clusters {
			all = append(all, c.Hosts...)
		}
		inDC := map[string]bool{}
		for _, h := range all {
			if hosts[h.Name] {
				return fmt.Errorf("host %q defined twice", h.Name)
			}
			if h.CPUSockets < 1 || h.CPUCores < h.CPUSockets || h.CPUThreads < h.CPUCores || h.CPUMhz < 1 || h.hostMemory() < mib {
				return fmt.Errorf("host %q: impossible hardware %+v", h.Name, h)
			}
			if h.OverheadCPUMhz < 0 || h.OverheadCPUMhz >= h.CPUMhz*int32(h.CPUCores) || h.OverheadMemoryMB < 0 || h.OverheadMemoryMB >= h.MemoryMB {
				return fmt.Errorf("host %q: hypervisor overhead %d MHz, %d MB is not below the host's capacity", h.Name, h.OverheadCPUMhz, h.OverheadMemoryMB)
			}
			switch h.ConnectionState {
			case "connected", "disconnected", "notResponding":
			default:
				return fmt.Errorf("host %q: unknown connection_state %q", h.Name, h.ConnectionState)
			}
			hosts[h.Name] = true
			inDC[h.Name] = true
		}
		for _, ds := range dc.Datastores {
			if !datastoreTypes[ds.Type] {
				return fmt.Errorf("datastore %q: unknown type %q", ds.Name, ds.Type)
			}
			if ds.FreeMB > ds.CapacityMB || ds.CapacityMB < 1 {
				return fmt.Errorf("datastore %q: free %d MB of %d MB", ds.Name, ds.FreeMB, ds.CapacityMB)
			}
			if !datastoreMaintenanceModes[ds.maintenanceMode()] {
				return fmt.Errorf("datastore %q: unknown maintenance %q", ds.Name, ds.Maintenance)
			}
			for _, h := range ds.Hosts {
				if !inDC[h] {
					return fmt.Errorf("datastore %q: host %q is not in datacenter %q", ds.Name, h, dc.Name)
				}
			}
		}
	}
	return nil
}

// datastoreMaintenanceModes are the summary.maintenanceMode values of a datastore.
var datastoreMaintenanceModes = map[string]bool{
	string(types.DatastoreSummaryMaintenanceModeStateNormal):              true,
	string(types.DatastoreSummaryMaintenanceModeStateEnteringMaintenance): true,
	string(types.DatastoreSummaryMaintenanceModeStateInMaintenance):       true,
}

// datastoreTypes are the summary.type values a topology may ask for.
var datastoreTypes = map[string]bool{"VMFS": true, "NFS": true, "NFS41": true, "vsan": true, "VVOL": true}

func checkFolder(path []string) error {
	for _, name := range path {
		if name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("bad folder name %q in %q", name, strings.Join(path, "/"))
		}
	}
	return nil
}
