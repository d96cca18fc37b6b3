// Command fakevc serves a fake vCenter: govmomi's simulator (vcsim) loaded
// with a vcconform topology, on a loopback address, over HTTPS.
//
// It writes cert.pem, key.pem and, once it serves, ready.json into -state-dir;
// the Python harness (conformance/harness.py) reads them. The same binary and
// flags serve the process backend and the container image.
package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

type options struct {
	listen       string
	topology     string
	stateDir     string
	username     string
	passwordFile string
	parentPID    int
	lifeline     string
	trace        bool
	version      bool
}

func main() {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "loopback `address` to serve on (port 0 picks a free port)")
	flag.StringVar(&o.topology, "topology", "", "normalized topology `file` (JSON, written by conformance/topology.py)")
	flag.StringVar(&o.stateDir, "state-dir", "", "`dir` for cert.pem, key.pem, ready.json and trace.log")
	flag.StringVar(&o.username, "username", "user", "the one user that may log in")
	flag.StringVar(&o.passwordFile, "password-file", "", "`file` (mode 0600) holding the user's password (required)")
	flag.IntVar(&o.parentPID, "parent-pid", 0, "exit when the process with this `pid` is gone (0: never)")
	flag.StringVar(&o.lifeline, "lifeline", "", "exit when the last writer of this named pipe (`fifo`) closes it: the process that started fakevc "+
		"holds it open for as long as it lives (works across pid namespaces, unlike -parent-pid)")
	flag.BoolVar(&o.trace, "trace", false, "write SOAP traffic to trace.log in the state dir")
	flag.BoolVar(&o.version, "version", false, "print versions as JSON and exit")
	flag.Parse()

	if o.version {
		_ = json.NewEncoder(os.Stdout).Encode(versions())
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "fakevc: %v\n", err)
		os.Exit(2)
	}
}

// versions reports what this binary was built from.
func versions() map[string]string {
	v := map[string]string{"go": runtime.Version(), "govmomi": "unknown"}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/vmware/govmomi" {
				v["govmomi"] = dep.Version
			}
		}
	}
	return v
}

// readPassword reads the password from a file only its owner may read. The
// password never comes from the environment (docker inspect shows it) nor
// from a flag (ps shows it), and there is no default: a fake vCenter that
// anyone may log in to with a well-known password is not started.
func readPassword(path string) (string, error) {
	if path == "" {
		return "", errors.New("-password-file is required (a file, mode 0600, holding the password)")
	}
	info, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("-password-file: %v", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("-password-file %s: mode %04o lets others read it; chmod 600 it", path, info.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("-password-file: %v", err)
	}
	password := strings.TrimRight(string(data), "\r\n")
	if password == "" {
		return "", fmt.Errorf("-password-file %s is empty", path)
	}
	return password, nil
}

func checkLoopback(listen string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %v", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %q: only a loopback IP address is allowed (e.g. 127.0.0.1:0)", listen)
	}
	return nil
}

func run(o options) error {
	if o.topology == "" || o.stateDir == "" {
		return errors.New("-topology and -state-dir are required")
	}
	if err := checkLoopback(o.listen); err != nil {
		return err
	}
	password, err := readPassword(o.passwordFile)
	if err != nil {
		return err
	}
	topo, err := loadTopology(o.topology)
	if err != nil {
		return err
	}
	cert, err := loadOrCreateCert(filepath.Join(o.stateDir, "cert.pem"), filepath.Join(o.stateDir, "key.pem"))
	if err != nil {
		return fmt.Errorf("TLS certificate: %v", err)
	}
	if o.trace {
		// The trace holds every SOAP body, logins included: for the owner's eyes only.
		f, err := os.OpenFile(filepath.Join(o.stateDir, "trace.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		simulator.Trace, simulator.TraceFile = true, f
	}

	fv, err := newFakevc(topo, o.username, password)
	if err != nil {
		return err
	}
	defer fv.close()

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           fv,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: headerTimeout, // the body's own deadline is set per request (frontdoor.go)
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       idleTimeout,
		ErrorLog:          log.New(io.Discard, "", 0), // clients that hang up mid-call are no news
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()

	addr := ln.Addr().(*net.TCPAddr)
	port := addr.Port
	fv.extra.setTLS(&cert, addr.IP.String())
	err = writeJSON(filepath.Join(o.stateDir, "ready.json"), map[string]any{
		"url":           fmt.Sprintf("https://%s/sdk", net.JoinHostPort(addr.IP.String(), strconv.Itoa(port))),
		"port":          port,
		"pid":           os.Getpid(),
		"instance_uuid": fv.world.Load().model.ServiceContent.About.InstanceUuid,
		"versions":      versions(),
		"build_ms":      fv.world.Load().built.Milliseconds(),
	})
	if err != nil {
		_ = srv.Close()
		return err
	}

	lifeline, err := openLifeline(o.lifeline)
	if err != nil {
		_ = srv.Close()
		return err
	}
	orphaned := waitForStop(o.parentPID, lifeline)
	closeWithin(srv, 2*time.Second)
	if orphaned {
		// Nobody is left to clean up after us: the state dir was made for this run alone.
		removeContents(o.stateDir)
	}
	return nil
}

// removeContents empties dir and then removes it; in a container dir is a
// mount point, which stays (empty).
func removeContents(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
	_ = os.Remove(dir)
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path) // readers never see a half-written file
}

// openLifeline starts watching the lifeline pipe (none: a channel that never
// closes); the channel closes once no process holds the pipe open for writing.
func openLifeline(path string) (<-chan struct{}, error) {
	gone := make(chan struct{})
	if path == "" {
		return gone, nil
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return nil, fmt.Errorf("-lifeline %s: expected a named pipe (mkfifo) that the parent holds open for writing", path)
	}
	go func() {
		defer close(gone)
		f, err := os.Open(path) // the writer already holds it open: this does not block
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = io.Copy(io.Discard, f) // EOF: the last writer has gone
	}()
	return gone, nil
}

// waitForStop returns on SIGINT or SIGTERM, or once the parent process is gone
// or has closed the lifeline (so a killed test run never leaves a simulator
// behind); it reports which.
func waitForStop(parentPID int, lifeline <-chan struct{}) (orphaned bool) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-sig:
			return false
		case <-lifeline:
			return true
		case <-tick.C:
			if parentPID > 0 && !alive(parentPID) {
				return true
			}
		}
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// closeWithin stops the server, not waiting for long polls past the limit.
func closeWithin(s *http.Server, limit time.Duration) {
	done := make(chan struct{})
	go func() { _ = s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
	}
}
