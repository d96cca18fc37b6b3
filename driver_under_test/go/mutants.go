// Deliberately broken variants of this driver, selected with -mutant (comma-separated): each must be caught
// by the requirements tests/test_selftest.py names for it, so the checks are shown able to fail through the
// protocol as they are for Python drivers (driver_under_test/mutants.py).

package main

import (
	"fmt"
	"sort"
	"strings"
)

// MutantNames are the broken behaviours -mutant can select, each with what it breaks.
var MutantNames = map[string]string{
	"logs-password":              "logs the vCenter password at login (SEC-03)",
	"silent-missing-cluster":     "leaves a missing configured cluster out without a warning (NODE-05)",
	"untyped-errors":             "answers an unknown node with JSON-RPC -32603, not NodeNotFound (RES-04, SPAWN-03)",
	"per-cluster-queries":        "reads the whole inventory once per configured cluster (EFF-01, EFF-02)",
	"counts-unschedulable-hosts": "counts hosts in maintenance or not connected (RES-01, RES-03)",
}

// Mutants is the set of broken behaviours in force.
type Mutants map[string]bool

// ParseMutants reads -mutant's value; an unknown name is an error naming the known ones.
func ParseMutants(value string) (Mutants, error) {
	m := Mutants{}
	for _, name := range strings.Split(value, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if _, ok := MutantNames[name]; !ok {
			known := make([]string, 0, len(MutantNames))
			for k := range MutantNames {
				known = append(known, k)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("-mutant %q: no such mutant (known: %s)", name, strings.Join(known, ", "))
		}
		m[name] = true
	}
	return m, nil
}

// Has says whether a broken behaviour is in force.
func (m Mutants) Has(name string) bool { return m[name] }
