// The contract's types as the protocol carries them (conformance/contract.py), and the configuration's
// rules (driver_under_test/config.py: check_config), which this driver applies to every configuration.

package main

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dlclark/regexp2"
)

// Config is DriverConfig. Members this driver does not know are ignored (encoding/json drops them).
type Config struct {
	URL            string   `json:"url"`
	Username       string   `json:"username"`
	Password       string   `json:"password"`
	Clusters       []string `json:"clusters"`
	CAFile         *string  `json:"ca_file"`
	Insecure       bool     `json:"insecure"`
	DatastoreRegex *string  `json:"datastore_regex"`
	ServiceID      string   `json:"service_id"`
	ResourcePool   *string  `json:"resource_pool"`
	// VCenterTimeoutS bounds vCenter's silence on one call (seconds); absent: DefaultCallTimeout.
	VCenterTimeoutS *float64 `json:"vcenter_timeout_s"`
}

// String never shows the password: a Config that reaches a log or an error stays safe.
func (c Config) String() string {
	return fmt.Sprintf("Config{url: %s, username: %s, clusters: %v, service_id: %s}", c.URL, c.Username, c.Clusters,
		c.ServiceID)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// Instance is the part of a Nova instance the driver needs.
type Instance struct {
	UUID     string `json:"uuid"`
	Name     string `json:"name"`
	VCPUs    int32  `json:"vcpus"`
	MemoryMB int64  `json:"memory_mb"`
	RootGB   int64  `json:"root_gb"`
}

// InventoryRecord is one resource class of a placement-style inventory.
type InventoryRecord struct {
	Total           int64   `json:"total"`
	Reserved        int64   `json:"reserved"`
	MinUnit         int64   `json:"min_unit"`
	MaxUnit         int64   `json:"max_unit"`
	StepSize        int64   `json:"step_size"`
	AllocationRatio float64 `json:"allocation_ratio"`
}

// Resources is what get_available_resource reports for one node (memory in MiB, disk in GiB).
type Resources struct {
	VCPUs              int64                      `json:"vcpus"`
	MemoryMB           int64                      `json:"memory_mb"`
	LocalGB            int64                      `json:"local_gb"`
	VCPUsUsed          int64                      `json:"vcpus_used"`
	MemoryMBUsed       int64                      `json:"memory_mb_used"`
	LocalGBUsed        int64                      `json:"local_gb_used"`
	HypervisorType     string                     `json:"hypervisor_type"`
	HypervisorVersion  int64                      `json:"hypervisor_version"`
	HypervisorHostname string                     `json:"hypervisor_hostname"`
	CPUInfo            string                     `json:"cpu_info"`
	Inventory          map[string]InventoryRecord `json:"inventory"`
}

// InstanceInfo is what get_info reports.
type InstanceInfo struct {
	State    string `json:"state"`
	Nodename string `json:"nodename"`
}

var serviceIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func configError(format string, args ...any) error {
	return newError("DriverError", format, args...)
}

// checkConfig is check_config: the first thing wrong with the configuration, as one line naming the key.
func checkConfig(c *Config) error {
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		scheme, host := "no scheme", "no host"
		if err == nil && u.Scheme != "" {
			scheme = u.Scheme
		}
		if err == nil && u.Hostname() != "" {
			host = u.Hostname()
		}
		return configError("url: expected https://host[:port]/sdk, got %s://%s", scheme, host)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
			return configError("url: the port is not a number between 0 and 65535")
		}
	}
	if c.Username == "" || c.Password == "" {
		return configError("credentials: username and password must both be set")
	}
	for _, cl := range c.Clusters {
		if strings.TrimSpace(cl) == "" {
			return configError("clusters: every entry must be an inventory path or a moref, got %q", cl)
		}
	}
	if c.CAFile != nil {
		if st, err := os.Stat(*c.CAFile); err != nil || !st.Mode().IsRegular() {
			return configError("ca_file: no such file %s", *c.CAFile)
		}
	}
	if c.DatastoreRegex != nil {
		if _, err := compileWhole(*c.DatastoreRegex); err != nil {
			return configError("datastore_regex: %q is not a regular expression (%v)", *c.DatastoreRegex, err)
		}
	}
	if c.ServiceID == "" {
		c.ServiceID = "compute-0"
	}
	if !serviceIDPattern.MatchString(c.ServiceID) {
		return configError("service_id: expected 1-64 letters, digits, '.', '_' or '-', got %q", c.ServiceID)
	}
	if p := c.ResourcePool; p != nil && (strings.Trim(*p, "/") == "" || strings.HasPrefix(*p, "/")) {
		return configError("resource_pool: expected a pool path below each cluster's root pool (e.g. 'nova' or "+
			"'tenants/nova'), got %q", *p)
	}
	if t := c.VCenterTimeoutS; t != nil && (*t <= 0 || *t > 3600) {
		return configError("vcenter_timeout_s: expected seconds above 0 and at most 3600, got %v", *t)
	}
	return nil
}

// pythonGroups rewrites Python's spellings of named groups, (?P<name>...) and (?P=name), as regexp2 spells
// them (.NET's (?<name>...) and \k<name>).
var pythonBackref = regexp.MustCompile(`\(\?P=([A-Za-z_][A-Za-z0-9_]*)\)`)

func pythonGroups(pattern string) string {
	return pythonBackref.ReplaceAllString(strings.ReplaceAll(pattern, "(?P<", "(?<"), `\k<$1>`)
}

// wholeName is a datastore filter: datastore_regex as the contract defines it, a Python regular expression
// that must match the whole name (re.fullmatch). Python's re backtracks and has lookarounds and
// backreferences, which Go's RE2 refuses, so the filter is compiled with regexp2, whose syntax is Python's
// for all a filter needs; each match is bounded in time (a pathological pattern cannot hang a refresh).
type wholeName struct{ re *regexp2.Regexp }

// MatchString says whether the whole name matches (a match that times out does not).
func (w wholeName) MatchString(name string) bool {
	ok, err := w.re.MatchString(name)
	return ok && err == nil
}

func compileWhole(pattern string) (wholeName, error) {
	p := pythonGroups(pattern)
	if _, err := regexp2.Compile(p, regexp2.None); err != nil {
		return wholeName{}, err
	}
	re, err := regexp2.Compile(`\A(?:`+p+`)\z`, regexp2.None)
	if err != nil {
		return wholeName{}, err
	}
	re.MatchTimeout = time.Second
	return wholeName{re}, nil
}
