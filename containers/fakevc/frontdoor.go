// The one front door: request size and time limits, the session that
// /folder needs, the SOAP calls an anonymous client may make, and a panic
// in a handler answered as a fault instead of taking the process down.
package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	// defaultMaxBody bounds a request body (SOAP or a /folder upload):
	// a CreateVM spec is a few KB, a filter naming 8,000 hosts about 2 MB;
	// an unbounded body was read whole into memory (200 MB took 2 GB).
	defaultMaxBody = 16 << 20
	// defaultBodyTimeout bounds the time to send a request body; it ends
	// when the body is read, so a long poll may then wait as long as it asks.
	defaultBodyTimeout = 60 * time.Second
	// Server-wide limits, set in main: the time to send the request line and
	// headers, their size, and how long an idle keep-alive connection stays
	// (long: a client's pooled connection that the server closed fails the
	// next call, and a spawn is not repeated).
	headerTimeout  = 10 * time.Second
	maxHeaderBytes = 64 << 10
	idleTimeout    = 15 * time.Minute
)

// limits are the front door's per-request limits (fields of fakevc; tests
// shorten them).
type limits struct {
	maxBody     int64
	bodyTimeout time.Duration
	panics      atomic.Int64 // handler panics answered with a fault (a bug: the fuzz tests require 0)
}

// setLimits changes the body limit and timeout (0 keeps one as it is).
func (s *fakevc) setLimits(maxBody int64, bodyTimeout time.Duration) {
	if maxBody > 0 {
		s.maxBody = maxBody
	}
	if bodyTimeout > 0 {
		s.bodyTimeout = bodyTimeout
	}
}

// takePanics is the number of handler panics since the last call.
func takePanics(s *fakevc) int64 { return s.panics.Swap(0) }

// readBody reads a request body within the size limit (413 beyond it) and
// the body timeout; false when it has already answered.
func (s *fakevc) readBody(rw http.ResponseWriter, r *http.Request) ([]byte, bool) {
	rc := http.NewResponseController(rw)
	_ = rc.SetReadDeadline(time.Now().Add(s.bodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, s.maxBody))
	_ = r.Body.Close()
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(rw, fmt.Sprintf("request body larger than %d bytes", s.maxBody), http.StatusRequestEntityTooLarge)
		} else {
			http.Error(rw, "cannot read the request body", http.StatusBadRequest)
		}
		return nil, false
	}
	return body, true
}

// recoverPanic answers a panic in a handler with a SOAP SystemError (500)
// and logs it, so one bad request cannot end every client's vCenter. It
// cannot release a lock vcsim held when it panicked: the fuzz tests are what
// keep such inputs out.
func (s *fakevc) recoverPanic(rw http.ResponseWriter, r *http.Request) {
	p := recover()
	if p == nil {
		return
	}
	if p == http.ErrAbortHandler {
		panic(p)
	}
	s.panics.Add(1)
	log.Printf("fakevc: panic serving %s %s: %v\n%s", r.Method, r.URL.Path, p, debug.Stack())
	rw.Header().Set("Content-Type", "text/xml; charset=utf-8")
	rw.WriteHeader(http.StatusInternalServerError)
	_, _ = fmt.Fprintf(rw, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><soapenv:Fault>`+
		`<faultcode>ServerFaultCode</faultcode><faultstring>fakevc: internal error: %s</faultstring>`+
		`<detail><SystemErrorFault xmlns="urn:vim25" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" `+
		`xsi:type="SystemError"><reason>internal error</reason></SystemErrorFault></detail>`+
		`</soapenv:Fault></soapenv:Body></soapenv:Envelope>`, xmlText(fmt.Sprint(p)))
}

// fetchTarget is the object a Fetch reads (its request type is internal to govmomi).
func fetchTarget(body any) types.ManagedObjectReference {
	v := reflect.ValueOf(body)
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() == reflect.Struct {
		if f := v.FieldByName("This"); f.IsValid() {
			if ref, ok := f.Interface().(types.ManagedObjectReference); ok {
				return ref
			}
		}
	}
	return types.ManagedObjectReference{}
}

func xmlText(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(oneLine(s))
}

// serveFolder serves datastore files (vcsim's /folder handler) to a
// logged-in session only, as vCenter does; anything else is 401.
func (w *world) serveFolder(rw http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(soap.SessionCookieName)
	if err != nil || !w.liveSession(c.Value) {
		rw.Header().Set("WWW-Authenticate", `Basic realm="VMware HTTP server"`)
		http.Error(rw, "datastore file access needs a vCenter session", http.StatusUnauthorized)
		return
	}
	w.model.Service.ServeDatastore(rw, r)
}

// liveSession tells whether key is a session of this world.
func (w *world) liveSession(key string) bool {
	return key != "" && slices.ContainsFunc(w.sessions(), func(s types.UserSession) bool { return s.Key == key })
}

// anonymousFault refuses what a client without a session may not do.
// vcsim lets anyone read any property (RetrieveProperties, RetrievePropertiesEx
// and Fetch are open "for now"); vCenter answers NotAuthenticated for all but
// the ServiceInstance, whose content a client reads before it logs in.
func anonymousFault(ctx *simulator.Context, m *simulator.Method) types.BaseMethodFault {
	if ctx.Session != nil {
		return nil
	}
	var specs []types.PropertyFilterSpec
	switch req := m.Body.(type) {
	case *types.RetrieveProperties:
		specs = req.SpecSet
	case *types.RetrievePropertiesEx:
		specs = req.SpecSet
	default:
		if m.Name == "Fetch" && fetchTarget(m.Body) != vim25.ServiceInstance {
			return &types.NotAuthenticated{NoPermission: types.NoPermission{Object: &m.This, PrivilegeId: "System.View"}}
		}
		return nil
	}
	for _, spec := range specs {
		for _, o := range spec.ObjectSet {
			if o.Obj != vim25.ServiceInstance || len(o.SelectSet) > 0 {
				return &types.NotAuthenticated{NoPermission: types.NoPermission{Object: &m.This, PrivilegeId: "System.View"}}
			}
		}
	}
	return nil
}

// malformedRequest refuses a request that holds a list element of a type
// the server does not know (an unknown xsi:type decodes to nil): vcsim
// dereferences such elements, for instance in a PropertyCollector
// selectSet, while it holds an object's lock, which stays held for ever.
// vCenter answers InvalidType.
func malformedRequest(m *simulator.Method) types.BaseMethodFault {
	if where := nilElement(reflect.ValueOf(m.Body), m.Name, 0); where != "" {
		return &types.InvalidType{InvalidRequest: types.InvalidRequest{}, Argument: where}
	}
	return nil
}

// nilElement is the path of the first nil element of a list within v, or "".
func nilElement(v reflect.Value, path string, depth int) string {
	if depth > 64 {
		return path // deeper than any vSphere type: refuse rather than recurse
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return ""
		}
		return nilElement(v.Elem(), path, depth+1)
	case reflect.Struct:
		t := v.Type()
		for i := range v.NumField() {
			if !t.Field(i).IsExported() {
				continue
			}
			if where := nilElement(v.Field(i), path+"."+t.Field(i).Name, depth+1); where != "" {
				return where
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			e := v.Index(i)
			if (e.Kind() == reflect.Interface || e.Kind() == reflect.Pointer) && e.IsNil() {
				return fmt.Sprintf("%s[%d]", path, i)
			}
			if where := nilElement(e, fmt.Sprintf("%s[%d]", path, i), depth+1); where != "" {
				return where
			}
		}
	}
	return ""
}
