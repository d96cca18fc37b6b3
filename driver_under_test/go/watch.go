// Update notifications (capability update_notifications): wait_for_changes follows vCenter with
// WaitForUpdatesEx on a PropertyCollector of the session whose filter is the full refresh's query, instead of
// polling. When vCenter reports anything, the driver takes a full refresh and compares what it reports (every
// node's path and figures) with what it reported when the wait began: a change returns true, a change that
// does not touch the managed clusters waits on. (The Python reference applies vCenter's changes to its
// snapshot instead of refreshing; the answers are the same, the Go driver's code is shorter: see
// docs/driver.md, "The Go driver".)

package main

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

// watch is the session's collector following the inventory, and the version of vCenter's last answer.
type watch struct {
	pc      types.ManagedObjectReference
	version string
}

// fingerprint is what the driver reports: every node's path and figures.
func (d *Driver) fingerprint(ctx context.Context) (string, error) {
	nodes, err := d.currentNodes(ctx)
	if err != nil {
		return "", err
	}
	seen := map[string]any{}
	for name, n := range nodes {
		seen[name] = []any{n.Path, d.resources(n)}
	}
	data, err := json.Marshal(seen) // maps are written with sorted keys: equal reports, equal texts
	return string(data), err
}

// WaitForChanges is wait_for_changes: true once vCenter reported a change to what the driver reports (the
// figures are then current), false when nothing changed within timeout seconds (rounded up to whole seconds:
// vCenter waits in seconds).
func (d *Driver) WaitForChanges(ctx context.Context, timeout float64) (bool, error) {
	d.watchMu.Lock()
	defer d.watchMu.Unlock()
	deadline := time.Now().Add(time.Duration(timeout * float64(time.Second)))
	before, err := d.fingerprint(ctx)
	if err != nil {
		return false, err
	}
	longest := min(maxWaitS, int(math.Ceil(d.callTimeout().Seconds()))-1) // a long poll is never a silent vCenter
	for {
		wait := int32(max(0, min(int(math.Ceil(time.Until(deadline).Seconds())), longest)))
		changed := false
		err := d.call(ctx, "wait for changes", true, func(ctx context.Context) error {
			var err error
			changed, err = d.pull(ctx, wait)
			return err
		})
		if err != nil {
			var de *DriverError
			if errors.As(err, &de) {
				return false, err
			}
			return false, newError("VCenterUnavailable", "wait for changes: %s", errorText(err))
		}
		if changed {
			if err := d.refresh(ctx); err != nil {
				return false, err
			}
			now, err := d.fingerprint(ctx)
			if err != nil {
				return false, err
			}
			if now != before {
				return true, nil
			}
		}
		if !time.Now().Before(deadline) {
			return false, nil
		}
	}
}

// pull waits up to wait seconds for vCenter's next changes on the watch: true when any came, or when the
// watch was set up anew (what happened before it existed was not seen).
func (d *Driver) pull(ctx context.Context, wait int32) (bool, error) {
	d.mu.Lock()
	w := d.watch
	d.mu.Unlock()
	if w == nil {
		return true, d.startWatch(ctx)
	}
	version, changed := w.version, false
	options := &types.WaitOptions{MaxWaitSeconds: &wait}
	for {
		res, err := methods.WaitForUpdatesEx(ctx, d.vc, &types.WaitForUpdatesEx{This: w.pc, Version: version,
			Options: options})
		if err != nil {
			return false, err
		}
		update := res.Returnval
		if update == nil {
			break
		}
		changed, version = true, update.Version
		if update.Truncated == nil || !*update.Truncated {
			break
		}
		zero := int32(0)
		options = &types.WaitOptions{MaxWaitSeconds: &zero} // the rest of a truncated answer, at once
	}
	d.mu.Lock()
	if d.watch == w {
		w.version = version
	}
	d.mu.Unlock()
	return changed, nil
}

// startWatch makes the session's collector and its filter (the refresh's query, whole values), and reads its
// first answer (the whole current state) to its end, so that later answers carry only changes.
func (d *Driver) startWatch(ctx context.Context) error {
	res, err := methods.CreatePropertyCollector(ctx, d.vc, &types.CreatePropertyCollector{
		This: d.vc.ServiceContent.PropertyCollector})
	if err != nil {
		return err
	}
	pc := res.Returnval
	err = func() error {
		spec, err := d.inventorySpec(ctx)
		if err != nil {
			return err
		}
		if _, err := methods.CreateFilter(ctx, d.vc, &types.CreateFilter{This: pc, Spec: spec,
			PartialUpdates: false}); err != nil {
			return err
		}
		zero := int32(0)
		version := ""
		for {
			res, err := methods.WaitForUpdatesEx(ctx, d.vc, &types.WaitForUpdatesEx{This: pc, Version: version,
				Options: &types.WaitOptions{MaxWaitSeconds: &zero}})
			if err != nil {
				return err
			}
			if res.Returnval == nil {
				break
			}
			version = res.Returnval.Version
			if res.Returnval.Truncated == nil || !*res.Returnval.Truncated {
				break
			}
		}
		d.mu.Lock()
		d.watch = &watch{pc: pc, version: version}
		d.mu.Unlock()
		return nil
	}()
	if err != nil {
		_, _ = methods.DestroyPropertyCollector(context.WithoutCancel(ctx), d.vc,
			&types.DestroyPropertyCollector{This: pc})
	}
	return err
}
