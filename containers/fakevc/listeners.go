// Extra HTTPS listeners for TLS checks: the same vCenter on another loopback
// port, behind a certificate that the usual CA signs for other host names.
package main

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// listeners are the extra listeners of one fakevc. A client that trusts the
// simulator's CA (cert.pem) trusts their certificates' chain; only the names
// differ, so a client that skips the host name check is the one that connects.
type listeners struct {
	ca   *tls.Certificate // the simulator's own certificate, a CA (nil: not serving TLS)
	host string           // the loopback address the simulator listens on

	mu      sync.Mutex
	servers []*http.Server
}

// setTLS records the simulator's certificate and address once it serves.
func (l *listeners) setTLS(ca *tls.Certificate, host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ca, l.host = ca, host
}

// open serves handler on a new loopback port with a certificate for names
// (DNS names or IP addresses) signed by the simulator's CA; it returns the port.
func (l *listeners) open(handler http.Handler, names []string) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ca == nil {
		return 0, &apiError{http.StatusConflict, "this fakevc does not serve TLS, so it has no CA to sign with"}
	}
	cert, err := leafCertificate(l.ca, names)
	if err != nil {
		return 0, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(l.host, "0"))
	if err != nil {
		return 0, err
	}
	srv := &http.Server{
		Handler:           handler,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // refused handshakes are what this listener is for
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	l.servers = append(l.servers, srv)
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// closeAll stops every extra listener.
func (l *listeners) closeAll() {
	l.mu.Lock()
	servers := l.servers
	l.servers = nil
	l.mu.Unlock()
	for _, s := range servers {
		closeWithin(s, 2*time.Second)
	}
}

// leafCertificate is a server certificate for names, signed by ca.
func leafCertificate(ca *tls.Certificate, names []string) (tls.Certificate, error) {
	parent, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return tls.Certificate{}, err
	}
	key, serial, err := newKeyAndSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"vcconform"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     parent.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// apiOpenListener serves this vCenter on another port with a certificate for
// other names: {"cert_names": ["vcenter.invalid"]} -> {"url", "port"}.
func (s *fakevc) apiOpenListener(r *http.Request, _ string) (any, error) {
	var req struct {
		CertNames []string `json:"cert_names"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if len(req.CertNames) == 0 {
		return nil, badRequest(`"cert_names": expected at least one DNS name or IP address`)
	}
	for _, n := range req.CertNames {
		if n == "" || len(n) > 253 {
			return nil, badRequest(`"cert_names": expected DNS names or IP addresses, got %q`, n)
		}
	}
	port, err := s.extra.open(s, req.CertNames)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return nil, err
		}
		return nil, fmt.Errorf("cannot open a listener: %v", err)
	}
	url := fmt.Sprintf("https://%s/sdk", net.JoinHostPort(s.extra.host, strconv.Itoa(port)))
	return map[string]any{"url": url, "port": port}, nil
}

func (s *fakevc) apiCloseListeners(*http.Request, string) (any, error) {
	s.extra.closeAll()
	return nil, nil
}
