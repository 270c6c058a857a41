package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync/atomic"
)

// Certificate is a TLS certificate that can be read again from its files
// while the server runs (a Let's Encrypt renewal followed by SIGHUP): new
// handshakes use the new one, open connections keep theirs.
type Certificate struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// LoadCertificate reads a PEM certificate (chain) and its private key.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again. On an error the certificate in use stays.
// A nil Certificate has nothing to reload.
func (c *Certificate) Reload() error {
	if c == nil {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %q and key %q: %w", c.certFile, c.keyFile, err)
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("parse TLS certificate %q: %w", c.certFile, err)
		}
	}
	c.cert.Store(&cert)
	return nil
}

// Leaf is the certificate in use, parsed.
func (c *Certificate) Leaf() *x509.Certificate {
	return c.cert.Load().Leaf
}

// Listener wraps ln so that it speaks TLS 1.2 or later with the certificate
// in use at each handshake.
func (c *Certificate) Listener(ln net.Listener) net.Listener {
	return tls.NewListener(ln, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cert.Load(), nil
		},
	})
}
