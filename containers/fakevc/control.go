// The control API (docs/control-api.md): HTTP + JSON under /fakevc/v1/ for
// what the vSphere API cannot do: faults, latency, slow tasks, session
// expiry, host and datastore states, extra TLS listeners, call counts and
// reset.
package main

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const controlPrefix = "/fakevc/v1/"

// apiError is a failed control request: an HTTP status and one line.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

type route struct {
	method string
	path   string // a trailing "/" matches any suffix (the suffix is the argument)
	fn     func(s *fakevc, r *http.Request, arg string) (any, error)
}

var routes = []route{
	{http.MethodGet, "status", (*fakevc).apiStatus},
	{http.MethodPost, "reset", (*fakevc).apiReset},
	{http.MethodGet, "calls", (*fakevc).apiCalls},
	{http.MethodDelete, "calls", (*fakevc).apiClearCalls},
	{http.MethodPost, "faults", (*fakevc).apiAddFault},
	{http.MethodGet, "faults", (*fakevc).apiFaults},
	{http.MethodDelete, "faults", (*fakevc).apiClearFaults},
	{http.MethodPut, "latency", (*fakevc).apiSetLatency},
	{http.MethodDelete, "latency", (*fakevc).apiClearLatency},
	{http.MethodPut, "task-delay", (*fakevc).apiSetTaskDelay},
	{http.MethodDelete, "task-delay", (*fakevc).apiClearTaskDelay},
	{http.MethodPut, "session-timeout", (*fakevc).apiSessionTimeout},
	{http.MethodPost, "sessions/expire", (*fakevc).apiExpireSessions},
	{http.MethodPut, "hosts/", (*fakevc).apiSetHost},
	{http.MethodPut, "datastores/", (*fakevc).apiSetDatastore},
	{http.MethodPost, "listeners", (*fakevc).apiOpenListener},
	{http.MethodDelete, "listeners", (*fakevc).apiCloseListeners},
	{http.MethodGet, "paging", (*fakevc).apiPaging},
	{http.MethodPut, "paging", (*fakevc).apiSetPaging},
}

func (s *fakevc) control(rw http.ResponseWriter, r *http.Request) {
	reply := func(status int, v any) {
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(status)
		_ = json.NewEncoder(rw).Encode(v)
	}
	user, pass, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(s.username)) != 1 ||
		subtle.ConstantTimeCompare([]byte(pass), []byte(s.password)) != 1 {
		rw.Header().Set("WWW-Authenticate", `Basic realm="fakevc"`)
		reply(http.StatusUnauthorized, map[string]string{"error": "the control API needs the vCenter credentials (HTTP Basic auth)"})
		return
	}
	path := strings.TrimPrefix(r.URL.Path, controlPrefix)
	known := false
	for _, rt := range routes {
		arg, match := "", rt.path == path
		if strings.HasSuffix(rt.path, "/") && strings.HasPrefix(path, rt.path) && len(path) > len(rt.path) {
			arg, match = path[len(rt.path):], true
		}
		if !match {
			continue
		}
		known = true
		if rt.method != r.Method {
			continue
		}
		out, err := rt.fn(s, r, arg)
		if err != nil {
			status := http.StatusInternalServerError
			var ae *apiError
			if errors.As(err, &ae) {
				status = ae.status
			}
			reply(status, map[string]string{"error": oneLine(err.Error())})
			return
		}
		if out == nil {
			out = map[string]any{}
		}
		reply(http.StatusOK, out)
		return
	}
	if known {
		reply(http.StatusMethodNotAllowed, map[string]string{"error": fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)})
		return
	}
	reply(http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no control endpoint %s (see docs/control-api.md)", r.URL.Path)})
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// decode reads a JSON body into v; unknown fields are errors.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("expected a JSON object in the request body")
		}
		return badRequest("bad JSON body: %v", err)
	}
	return nil
}

func (s *fakevc) apiStatus(*http.Request, string) (any, error) {
	w := s.world.Load()
	return map[string]any{
		"topology": s.topo.Name, "instance_uuid": w.model.ServiceContent.About.InstanceUuid,
		"generation": s.gen.Load(), "versions": versions(),
	}, nil
}

func (s *fakevc) apiReset(*http.Request, string) (any, error) {
	took, err := s.reset()
	if err != nil {
		return nil, err
	}
	return map[string]any{"generation": s.gen.Load(), "took_ms": float64(took.Microseconds()) / 1000}, nil
}

func (s *fakevc) apiCalls(*http.Request, string) (any, error) {
	return s.usage.report(), nil
}

func (s *fakevc) apiClearCalls(*http.Request, string) (any, error) {
	s.usage.clear()
	return nil, nil
}

// faultRule is a fault rule as the control API shows it; the injector's rule
// sits at the same index in the world's fault injector.
type faultRule struct {
	ID          int      `json:"id"`
	Method      string   `json:"method"`
	Fault       string   `json:"fault"`
	Object      *string  `json:"object"`
	Count       *int     `json:"count"`
	Probability *float64 `json:"probability"`
	Message     *string  `json:"message,omitempty"`
	Hits        int64    `json:"hits"`
}

func (s *fakevc) apiAddFault(r *http.Request, _ string) (any, error) {
	var req struct {
		Method      string   `json:"method"`
		Fault       string   `json:"fault"`
		Object      *string  `json:"object"`
		Count       *int     `json:"count"`
		Probability *float64 `json:"probability"`
		Message     *string  `json:"message"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Method == "" {
		return nil, badRequest(`"method": expected a SOAP method name or "*"`)
	}
	rule := &simulator.FaultInjectionRule{MethodName: req.Method, ObjectType: "*", ObjectName: "*", Probability: 1, Enabled: true}
	name := strings.TrimPrefix(strings.TrimPrefix(req.Fault, "vim.fault."), "vmodl.fault.")
	switch name {
	case "NotAuthenticated":
		rule.FaultType = simulator.FaultTypeNotAuthenticated
	case "NoPermission":
		rule.FaultType = simulator.FaultTypeNoPermission
	case "ManagedObjectNotFound":
		rule.FaultType = simulator.FaultTypeManagedObjectNotFound
	case "MethodNotFound":
		rule.FaultType = simulator.FaultTypeMethodNotFound
	default:
		fault, ok := newFault(name)
		if !ok {
			return nil, badRequest(`"fault": expected a vSphere fault type name such as SystemError or HostCommunication, got %q`, req.Fault)
		}
		rule.FaultType, rule.Fault = simulator.FaultTypeCustom, fault
	}
	if req.Object != nil {
		obj := *req.Object
		switch {
		case obj == "":
			return nil, badRequest(`"object": expected a moref value or a managed object type, got ""`)
		case isTypeName(obj):
			rule.ObjectType = obj
		default:
			rule.InclusionPropertyFilter = func(o mo.Reference) bool { return o != nil && o.Reference().Value == obj }
		}
	}
	if req.Count != nil {
		if *req.Count < 1 {
			return nil, badRequest(`"count": expected a whole number >= 1, got %d`, *req.Count)
		}
		rule.MaxCount = *req.Count
	}
	if req.Probability != nil {
		p := *req.Probability
		if math.IsNaN(p) || p < 0 || p > 1 {
			return nil, badRequest(`"probability": expected a number from 0 to 1, got %v`, p)
		}
		rule.Probability = p
	}
	if req.Message != nil {
		rule.Message = *req.Message
	}
	w := s.world.Load()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.model.Service.AddFaultRule(rule)
	id := len(w.faults) + 1
	w.faults = append(w.faults, faultRule{ID: id, Method: req.Method, Fault: name, Object: req.Object, Count: req.Count,
		Probability: req.Probability, Message: req.Message})
	return map[string]any{"id": id}, nil
}

// newFault makes a zero fault of the named vSphere fault type.
func newFault(name string) (types.BaseMethodFault, bool) {
	if name == "" {
		return nil, false
	}
	t, ok := types.TypeFunc()(name)
	if !ok || t.Kind() != reflect.Struct {
		return nil, false
	}
	f, ok := reflect.New(t).Interface().(types.BaseMethodFault)
	return f, ok
}

// isTypeName tells a managed object type (ClusterComputeResource) from a
// moref value (domain-c9): types are capitalized words without a dash.
func isTypeName(s string) bool {
	return unicode.IsUpper(rune(s[0])) && !strings.ContainsAny(s, "-:")
}

func (s *fakevc) apiFaults(*http.Request, string) (any, error) {
	w := s.world.Load()
	w.mu.Lock()
	defer w.mu.Unlock()
	stats := w.model.Service.GetFaultStats()
	out := make([]faultRule, len(w.faults))
	for i, f := range w.faults {
		if n, ok := stats[fmt.Sprintf("rule_%d_count", i)].(int64); ok {
			f.Hits = n
		}
		out[i] = f
	}
	return out, nil
}

func (s *fakevc) apiClearFaults(*http.Request, string) (any, error) {
	w := s.world.Load()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.model.Service.ClearFaultRules()
	w.faults = nil
	return nil, nil
}

type methodMs struct {
	Method *string  `json:"method"`
	Ms     *float64 `json:"ms"`
}

func (m *methodMs) check() (string, time.Duration, error) {
	if m.Method == nil || *m.Method == "" {
		return "", 0, badRequest(`"method": expected a SOAP method name or "*"`)
	}
	if m.Ms == nil || math.IsNaN(*m.Ms) || *m.Ms < 0 || *m.Ms > 3_600_000 {
		return "", 0, badRequest(`"ms": expected milliseconds from 0 to 3600000`)
	}
	return *m.Method, time.Duration(*m.Ms * float64(time.Millisecond)), nil
}

// decodeMethodMs reads and checks a {"method", "ms"} body.
func decodeMethodMs(r *http.Request) (string, time.Duration, error) {
	var req methodMs
	if err := decode(r, &req); err != nil {
		return "", 0, err
	}
	return req.check()
}

func (s *fakevc) apiSetLatency(r *http.Request, _ string) (any, error) {
	method, d, err := decodeMethodMs(r)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d == 0 {
		delete(s.latency, method)
	} else {
		s.latency[method] = d
	}
	return nil, nil
}

func (s *fakevc) apiClearLatency(*http.Request, string) (any, error) {
	s.mu.Lock()
	s.latency = map[string]time.Duration{}
	s.mu.Unlock()
	return nil, nil
}

func (s *fakevc) apiSetTaskDelay(r *http.Request, _ string) (any, error) {
	method, d, err := decodeMethodMs(r)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(method, "_Task") {
		return nil, badRequest(`"method": expected a task method such as CreateVM_Task, got %q`, method)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d == 0 {
		delete(s.taskDelays, method)
	} else {
		s.taskDelays[method] = int(d.Milliseconds())
	}
	setTaskDelays(s.taskDelays)
	return nil, nil
}

func (s *fakevc) apiClearTaskDelay(*http.Request, string) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taskDelays = map[string]int{}
	setTaskDelays(nil)
	return nil, nil
}

func (s *fakevc) apiSessionTimeout(r *http.Request, _ string) (any, error) {
	var req struct {
		Seconds *float64 `json:"seconds"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Seconds == nil || math.IsNaN(*req.Seconds) || *req.Seconds < 0 {
		return nil, badRequest(`"seconds": expected a number >= 0 (0: sessions never expire)`)
	}
	s.mu.Lock()
	s.sessionTimeout = time.Duration(*req.Seconds * float64(time.Second))
	s.mu.Unlock()
	return nil, nil
}

func (s *fakevc) apiExpireSessions(*http.Request, string) (any, error) {
	w := s.world.Load()
	var keys []string
	for _, us := range w.sessions() {
		keys = append(keys, us.Key)
	}
	n := w.terminate(keys)
	w.ext.cancelWaits() // a waiting long poll returns, and its next call finds no session
	return map[string]any{"expired": n}, nil
}

func (s *fakevc) apiSetHost(r *http.Request, name string) (any, error) {
	var req struct {
		ConnectionState *string `json:"connection_state"`
		Maintenance     *bool   `json:"maintenance"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.ConnectionState != nil {
		switch types.HostSystemConnectionState(*req.ConnectionState) {
		case types.HostSystemConnectionStateConnected, types.HostSystemConnectionStateDisconnected,
			types.HostSystemConnectionStateNotResponding:
		default:
			return nil, badRequest(`"connection_state": expected connected, disconnected or notResponding, got %q`, *req.ConnectionState)
		}
	}
	w := s.world.Load()
	h := findHost(w.reg, name)
	if h == nil {
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("no host %q (give a moref such as host-21 or a host name)", name)}
	}
	ctx := w.controlContext()
	if req.ConnectionState != nil {
		setRuntime(ctx, h, "connectionState", types.HostSystemConnectionState(*req.ConnectionState))
	}
	if req.Maintenance != nil {
		setRuntime(ctx, h, "inMaintenanceMode", *req.Maintenance)
	}
	w.d.sync() // the derived figures are current when the call returns
	return nil, nil
}

// findHost finds a host by moref value or name.
func findHost(reg *simulator.Registry, name string) *simulator.HostSystem {
	if h, ok := reg.Get(types.ManagedObjectReference{Type: "HostSystem", Value: name}).(*simulator.HostSystem); ok {
		return h
	}
	hosts := reg.All("HostSystem")
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Reference().Value < hosts[j].Reference().Value })
	for _, e := range hosts {
		if e.Entity().Name == name {
			return e.(*simulator.HostSystem)
		}
	}
	return nil
}

func (s *fakevc) apiSetDatastore(r *http.Request, name string) (any, error) {
	var req struct {
		Accessible  *bool   `json:"accessible"`
		Maintenance *string `json:"maintenance"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Maintenance != nil && !datastoreMaintenanceModes[*req.Maintenance] {
		return nil, badRequest(`"maintenance": expected normal, enteringMaintenance or inMaintenance, got %q`, *req.Maintenance)
	}
	w := s.world.Load()
	ds, err := findDatastore(w.reg, name)
	if err != nil {
		return nil, err
	}
	ctx := w.controlContext()
	ctx.WithLock(ds, func() {
		var changes []types.PropertyChange
		if req.Accessible != nil {
			mounts := slices.Clone(ds.Host)
			for i := range mounts {
				mounts[i].MountInfo.Accessible = types.NewBool(*req.Accessible)
			}
			changes = append(changes, types.PropertyChange{Name: "summary.accessible", Val: *req.Accessible},
				types.PropertyChange{Name: "host", Val: mounts})
		}
		if req.Maintenance != nil {
			changes = append(changes, types.PropertyChange{Name: "summary.maintenanceMode", Val: *req.Maintenance})
		}
		if len(changes) > 0 {
			ctx.Map.Update(ctx, ds, changes)
		}
	})
	w.d.sync()
	return nil, nil
}

// findDatastore finds a datastore by moref value or by a name no other
// datastore has.
func findDatastore(reg *simulator.Registry, name string) (*simulator.Datastore, error) {
	if ds, ok := reg.Get(types.ManagedObjectReference{Type: "Datastore", Value: name}).(*simulator.Datastore); ok {
		return ds, nil
	}
	var found []*simulator.Datastore
	for _, e := range reg.All("Datastore") {
		if e.Entity().Name == name {
			found = append(found, e.(*simulator.Datastore))
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("no datastore %q (give a moref such as datastore-12 or a name)", name)}
	}
	return nil, badRequest("%d datastores are named %q: give the moref", len(found), name)
}
