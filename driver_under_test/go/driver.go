// The driver's connection to vCenter and the one way every call is made (docs/driver.md, "Sessions and
// faults"): an ended session is replaced, transient faults are retried a bounded number of times, and what
// still fails becomes a typed error without credentials in it.

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// DriverName and DriverVersion are what the handshake declares.
const (
	DriverName    = "vcconform-go-driver"
	DriverVersion = "1.0.0"
)

const (
	attempts  = 3                      // per vCenter call: the first try and two retries after a transient fault
	renewals  = 3                      // per vCenter call: new logins (or session objects) after the session ended
	backoff   = 200 * time.Millisecond // before the first retry; doubled before each next one
	maxWaitS  = 60                     // longest single WaitForUpdatesEx, a second below the call timeout at least
	taskLimit = 600 * time.Second
	// DefaultCallTimeout bounds one vCenter call when the configuration sets no vcenter_timeout_s: generous,
	// since a slow answer is not an error (FAULT-03); a silent vCenter is.
	DefaultCallTimeout = 300 * time.Second
)

// Driver is one compute service's driver: several clusters of one vCenter, one node per cluster.
type Driver struct {
	log     *slog.Logger
	mutants Mutants

	cfgMu sync.RWMutex
	cfg   Config
	where string // host:port, the only way logs and errors name vCenter

	vc          *vim25.Client
	vcenterUUID string
	version     int64

	// Session-scoped objects, made anew after a new login (guarded by mu).
	mu         sync.Mutex
	generation int
	views      map[string]types.ManagedObjectReference
	watch      *watch
	closed     bool

	// The snapshot of the last full refresh (guarded by snapMu): nodes by name, or nil after a failed refresh.
	snapMu     sync.RWMutex
	nodes      map[string]*Node
	refreshErr string

	watchMu sync.Mutex // one wait_for_changes at a time
}

// NewDriver checks the configuration and logs in.
func NewDriver(ctx context.Context, cfg Config, log *slog.Logger, mutants Mutants) (*Driver, error) {
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.URL)
	port := u.Port()
	if port == "" {
		port = "443"
	}
	d := &Driver{log: log.With("service", cfg.ServiceID), mutants: mutants, cfg: cfg,
		where: net.JoinHostPort(u.Hostname(), port), views: map[string]types.ManagedObjectReference{}}
	if err := d.connect(ctx, u); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Driver) config() Config {
	d.cfgMu.RLock()
	defer d.cfgMu.RUnlock()
	return d.cfg
}

func (d *Driver) callTimeout() time.Duration {
	if t := d.config().VCenterTimeoutS; t != nil {
		return time.Duration(*t * float64(time.Second))
	}
	return DefaultCallTimeout
}

// timeoutRT bounds every SOAP call by the driver's call timeout.
type timeoutRT struct {
	sc *soap.Client
	d  *Driver
}

func (t timeoutRT) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	ctx, cancel := context.WithTimeout(ctx, t.d.callTimeout())
	defer cancel()
	return t.sc.RoundTrip(ctx, req, res)
}

func (d *Driver) connect(ctx context.Context, u *url.URL) error {
	cfg := d.config()
	endpoint := &url.URL{Scheme: "https", Host: u.Host, Path: u.Path}
	if endpoint.Path == "" {
		endpoint.Path = "/sdk"
	}
	if cfg.Insecure {
		d.log.Warn(fmt.Sprintf("TLS verification of vCenter at %s is off (insecure is set)", d.where))
	}
	sc := soap.NewClient(endpoint, cfg.Insecure)
	if cfg.CAFile != nil {
		if err := sc.SetRootCAs(*cfg.CAFile); err != nil {
			return configError("ca_file: %s holds no usable certificate", *cfg.CAFile)
		}
	}
	// govmomi's own TLS dial takes no context: one that honours it keeps a stalled handshake bounded.
	transport := sc.DefaultTransport()
	transport.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return (&tls.Dialer{Config: transport.TLSClientConfig}).DialContext(ctx, network, addr)
	}
	err := d.call(ctx, "connect", true, func(ctx context.Context) error {
		vc, err := vim25.NewClient(ctx, timeoutRT{sc, d})
		if err != nil {
			return err
		}
		vc.Client = sc
		if err := d.login(ctx, vc); err != nil {
			return err
		}
		d.vc = vc
		return nil
	})
	if err != nil {
		var de *DriverError
		switch {
		case errors.As(err, &de):
			return err
		case faultName(err) == "InvalidLogin":
			return newError("AuthenticationFailed", "vCenter at %s refused the credentials", d.where)
		case soap.IsCertificateUntrusted(err):
			return newError("VCenterUnavailable", "vCenter at %s presented an untrusted certificate (%s); give its "+
				"CA bundle (ca_file)", d.where, certificateReason(err))
		default:
			return newError("VCenterUnavailable", "cannot connect to vCenter at %s: %s", d.where, errorText(err))
		}
	}
	about := d.vc.ServiceContent.About
	d.vcenterUUID = about.InstanceUuid
	d.version = versionInt(about.Version)
	return nil
}

func (d *Driver) login(ctx context.Context, vc *vim25.Client) error {
	cfg := d.config()
	if d.mutants.Has("logs-password") {
		// Mutant: a debugging line left in, as drivers do.
		d.log.Info(fmt.Sprintf("logging in to %s as %s with password %s", d.where, cfg.Username, cfg.Password))
	}
	_, err := methods.Login(ctx, vc, &types.Login{This: *vc.ServiceContent.SessionManager, UserName: cfg.Username,
		Password: cfg.Password})
	return err
}

// relogin replaces an ended session on the same connection: morefs stay valid, session objects do not.
func (d *Driver) relogin(ctx context.Context, seen int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.generation != seen {
		return nil // another goroutine has logged in again meanwhile
	}
	if d.vc == nil {
		return newError("VCenterUnavailable", "vCenter at %s ended the session while the driver logged in", d.where)
	}
	d.views, d.watch = map[string]types.ManagedObjectReference{}, nil
	if err := d.login(ctx, d.vc); err != nil {
		if faultName(err) == "InvalidLogin" {
			return newError("AuthenticationFailed", "vCenter at %s refused the credentials", d.where)
		}
		return err
	}
	d.generation++
	d.log.Info(fmt.Sprintf("logged in to vCenter at %s again", d.where))
	return nil
}

func (d *Driver) currentGeneration() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.generation
}

// forgetSessionObject: a view or collector of ours is gone (with its session); make them anew at next use.
func (d *Driver) forgetSessionObject(gone types.ManagedObjectReference) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	ours := d.watch != nil && d.watch.pc == gone
	for _, v := range d.views {
		ours = ours || v == gone
	}
	if ours {
		d.views, d.watch = map[string]types.ManagedObjectReference{}, nil
	}
	return ours
}

// call runs one vCenter operation with the session and fault policy of docs/driver.md.
//
// An ended session (NotAuthenticated, or one of our views gone) is renewed and the call repeated, at most
// renewals times: vCenter refused the call before it ran, so even a mutation is safe to repeat. A transient
// fault repeats an idempotent call after a backoff, attempts times in all. What still fails is
// VCenterUnavailable; other vCenter faults go to the caller unchanged.
func (d *Driver) call(ctx context.Context, doing string, idempotent bool, fn func(context.Context) error) error {
	if d.isClosed() {
		return newError("VCenterUnavailable", "%s: the driver is closed", doing)
	}
	tries, renewed, loginAfter := 0, 0, -1
	for {
		seen := d.currentGeneration()
		if loginAfter >= 0 {
			if err := d.relogin(ctx, loginAfter); err != nil {
				var de *DriverError
				if errors.As(err, &de) {
					return err
				}
				return newError("VCenterUnavailable", "%s: logging in to vCenter at %s again failed (%s)", doing,
					d.where, errorText(err))
			}
			loginAfter = -1
		}
		tries++
		err := fn(ctx)
		if err == nil {
			return nil
		}
		var why string
		var de *DriverError
		name := faultName(err)
		switch {
		case errors.As(err, &de):
			return err
		case ctx.Err() != nil:
			return newError("VCenterUnavailable", "%s: the driver is closed", doing)
		case name == "NotAuthenticated":
			why = "the vCenter session has ended"
			if renewed < renewals {
				renewed, loginAfter = renewed+1, seen
				continue
			}
		case name == "ManagedObjectNotFound" && d.isSessionObject(missingObject(err)):
			why = "the vCenter session has ended (a view of the driver is gone)"
			if renewed < renewals {
				renewed++
				d.forgetSessionObject(*missingObject(err))
				continue
			}
		case soap.IsCertificateUntrusted(err):
			return err // not transient: the caller says what to fix
		case transient(err, name):
			why = errorText(err)
			if idempotent && tries < attempts {
				d.log.Warn(fmt.Sprintf("%s: %s; trying again", doing, why))
				if !sleep(ctx, backoff*time.Duration(1<<(tries-1))) {
					return newError("VCenterUnavailable", "%s: the driver is closed", doing)
				}
				continue
			}
		default:
			return err
		}
		plural := "s"
		if tries == 1 {
			plural = ""
		}
		return newError("VCenterUnavailable", "%s: vCenter at %s failed (%s) after %d attempt%s", doing, d.where,
			why, tries, plural)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (d *Driver) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

func (d *Driver) isSessionObject(ref *types.ManagedObjectReference) bool {
	return ref != nil && (ref.Type == "ContainerView" || ref.Type == "PropertyCollector")
}

// transient: the network, and vCenter saying it could not do it this time.
func transient(err error, name string) bool {
	switch name {
	case "HostCommunication", "SystemError", "RequestCanceled":
		return true
	case "":
		return !soap.IsSoapFault(err) && !soap.IsVimFault(err)
	}
	return false
}

// vimFault is the vSphere fault an error carries, or nil.
func vimFault(err error) any {
	if err == nil {
		return nil
	}
	var tf taskFault
	switch {
	case soap.IsSoapFault(err):
		return soap.ToSoapFault(err).VimFault()
	case soap.IsVimFault(err):
		return soap.ToVimFault(err)
	case errors.As(err, &tf):
		return tf.fault
	}
	return nil
}

// faultName is the fault's type name (NotAuthenticated...), "" for an error that is not a vSphere fault.
func faultName(err error) string {
	f := vimFault(err)
	if f == nil {
		return ""
	}
	t := reflect.TypeOf(f)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

func missingObject(err error) *types.ManagedObjectReference {
	switch f := vimFault(err).(type) {
	case types.ManagedObjectNotFound:
		return &f.Obj
	case *types.ManagedObjectNotFound:
		return &f.Obj
	}
	return nil
}

// errorText is 'SystemError: msg' for a vCenter fault, the error's own words otherwise.
func errorText(err error) string {
	var tf taskFault
	if errors.As(err, &tf) {
		return tf.Error()
	}
	if soap.IsSoapFault(err) {
		f := soap.ToSoapFault(err)
		if name := faultName(err); name != "" {
			return name + ": " + f.String
		}
		return f.String
	}
	if name := faultName(err); name != "" {
		return name
	}
	return err.Error()
}

// certificateReason is what the TLS stack said of the certificate ("x509: certificate signed by unknown
// authority", "... is valid for X, not Y").
func certificateReason(err error) string {
	var verification *tls.CertificateVerificationError
	if errors.As(err, &verification) {
		return verification.Err.Error()
	}
	return "not trusted"
}

// taskFault is a task that ended in error.
type taskFault struct {
	fault   types.BaseMethodFault
	message string
}

func (t taskFault) Error() string {
	name := reflect.TypeOf(t.fault).Elem().Name()
	if t.message != "" {
		return name + ": " + t.message
	}
	return name
}

var versionDigits = regexp.MustCompile(`\d+`)

// versionInt is '6.5.0' -> 6005000, the integer form Nova reports.
func versionInt(version string) int64 {
	parts := []int64{0, 0, 0}
	for i, s := range versionDigits.FindAllString(version, 3) {
		parts[i], _ = strconv.ParseInt(s, 10, 64)
	}
	return parts[0]*1_000_000 + parts[1]*1_000 + parts[2]
}

// Reconfigure takes a new configuration: clusters and filter apply at the next refresh, the pool at the next
// spawn, credentials at the next login; a new URL or TLS setting needs a new driver.
func (d *Driver) Reconfigure(cfg Config) error {
	if err := checkConfig(&cfg); err != nil {
		return err
	}
	old := d.config()
	if cfg.URL != old.URL || ptrValue(cfg.CAFile) != ptrValue(old.CAFile) || cfg.Insecure != old.Insecure {
		return configError("url, ca_file and insecure cannot change on reconfigure; build a new driver")
	}
	d.cfgMu.Lock()
	d.cfg = cfg
	d.cfgMu.Unlock()
	return nil
}

func ptrValue(p *string) string {
	if p == nil {
		return "\x00none"
	}
	return *p
}

// Close logs out and releases the session's objects. Safe to call twice.
func (d *Driver) Close(ctx context.Context) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	w, views := d.watch, d.views
	d.watch, d.views = nil, map[string]types.ManagedObjectReference{}
	d.mu.Unlock()
	if d.vc == nil {
		return // never connected
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if w != nil {
		_, _ = methods.DestroyPropertyCollector(ctx, d.vc, &types.DestroyPropertyCollector{This: w.pc})
	}
	for _, v := range views {
		_, _ = methods.DestroyView(ctx, d.vc, &types.DestroyView{This: v})
	}
	_, _ = methods.Logout(ctx, d.vc, &types.Logout{This: *d.vc.ServiceContent.SessionManager})
}
