// Connection-level faults: SOAP requests whose connection is closed without
// an answer (refuse), reset (reset), or held open unanswered (stall), as a
// vCenter that is down, crashing or hung looks to a client.
package main

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// connFaultModes are the modes the control API takes.
var connFaultModes = map[string]bool{"refuse": true, "reset": true, "stall": true}

// connFault is the connection fault in force (at most one), for a SOAP method
// or "*" and, optionally, a number of requests.
type connFault struct {
	Mode   string `json:"mode"`
	Method string `json:"method"`
	Count  *int   `json:"count"`
	Hits   int64  `json:"hits"`
}

// connFaults holds the fault in force and releases stalled connections.
type connFaults struct {
	mu      sync.Mutex
	current *connFault
	release chan struct{} // closed when the fault is cleared: stalled connections end
}

func (c *connFaults) set(f connFault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearLocked()
	c.current = &f
	c.release = make(chan struct{})
}

func (c *connFaults) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearLocked()
}

func (c *connFaults) clearLocked() {
	if c.release != nil {
		close(c.release)
	}
	c.current, c.release = nil, nil
}

func (c *connFaults) get() *connFault {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current == nil {
		return nil
	}
	f := *c.current
	return &f
}

// take returns the mode to apply to a call of method ("" for none) and the
// channel that ends a stall.
func (c *connFaults) take(method string) (string, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.current
	if f == nil || (f.Method != "*" && f.Method != method) {
		return "", nil
	}
	f.Hits++
	mode, release := f.Mode, c.release
	if f.Count != nil {
		if *f.Count--; *f.Count <= 0 {
			c.current = nil // the channel stays open: stalls of this rule last until cleared
		}
	}
	return mode, release
}

// apply does mode to the request's connection. The connection is taken from
// the HTTP server, so no answer is ever written to it.
func applyConnFault(rw http.ResponseWriter, r *http.Request, mode string, release <-chan struct{}) {
	hj, ok := rw.(http.Hijacker)
	if !ok {
		http.Error(rw, "connection fault not possible on this connection", http.StatusInternalServerError)
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	switch mode {
	case "reset":
		if tc, ok := underlyingTCP(conn); ok {
			_ = tc.SetLinger(0) // close sends RST
		}
	case "stall":
		// Until the fault is cleared or reset, or the client gives up.
		gone := make(chan struct{})
		go func() {
			buf := make([]byte, 1)
			for {
				_ = conn.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := conn.Read(buf); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						select {
						case <-release:
							close(gone)
							return
						default:
							continue
						}
					}
					close(gone)
					return
				}
			}
		}()
		select {
		case <-release:
		case <-gone:
		case <-r.Context().Done():
		}
	}
	_ = conn.Close()
}

// underlyingTCP finds the TCP connection under a TLS one.
func underlyingTCP(c net.Conn) (*net.TCPConn, bool) {
	type netConner interface{ NetConn() net.Conn }
	for {
		switch x := c.(type) {
		case *net.TCPConn:
			return x, true
		case netConner:
			c = x.NetConn()
		default:
			return nil, false
		}
	}
}
