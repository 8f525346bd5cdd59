// Package pki holds the stand-in's certificate authorities and everything that makes or reads
// keys and certificates: the identity encoding of TELEPORT.md §4, server certificates for the
// routes of §1, and the public keys clients send (§2, §3).
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// Suites are the signature algorithm suites of TELEPORT.md §2.
const (
	SuiteLegacy     = "legacy"
	SuiteBalancedV1 = "balanced-v1"
	SuiteFIPSV1     = "fips-v1"
	SuiteHSMV1      = "hsm-v1"
)

// NewKey makes a private key of the suite's algorithm: RSA 2048 for legacy, ECDSA P-256 otherwise.
func NewKey(suite string) (crypto.Signer, error) {
	if suite == SuiteLegacy || suite == "" {
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// CA is one certificate authority: a self-signed certificate and its key.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
	SSH     ssh.Signer
}

// NewCA makes a self-signed CA valid for ten years.
func NewCA(commonName, organization string, suite string) (*CA, error) {
	key, err := NewKey(suite)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{organization}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromSigner(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: EncodeCert(der), Key: key, SSH: signer}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// EncodeCert PEM-encodes a DER certificate.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// IssueUser signs a user certificate for the identity (TELEPORT.md §4): NotBefore one minute
// ago, NotAfter the identity's expiry, ServerAuth and ClientAuth usage.
func (ca *CA) IssueUser(id Identity, pub crypto.PublicKey, now time.Time) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      id.Subject(),
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     id.Expires,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, err
	}
	return EncodeCert(der), nil
}

// ServerCert is a TLS server certificate with its key, ready for tls.Certificate.
type ServerCert struct {
	CertPEM []byte
	KeyPEM  []byte
}

// IssueServer signs a server certificate (ServerAuth and ClientAuth) for the given names; an
// entry that parses as an IP becomes an IP SAN. The subject carries the host identity: CN =
// host id, O = role, and the Teleport cluster name.
func (ca *CA) IssueServer(commonName, role, cluster string, names []string, suite string) (*ServerCert, error) {
	key, err := NewKey(suite)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	subject := Identity{Username: commonName, Roles: []string{role}, TeleportCluster: cluster}.Subject()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &ServerCert{
		CertPEM: EncodeCert(der),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// IssueSSHUser signs an SSH user certificate for the identity, valid as long as its TLS twin.
func (ca *CA) IssueSSHUser(id Identity, authorizedKey []byte, now time.Time) ([]byte, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey(authorizedKey)
	if err != nil {
		return nil, fmt.Errorf("SSH public key is not in authorized_keys format: %w", err)
	}
	cert := &ssh.Certificate{
		Key:             pub,
		Serial:          serial().Uint64(),
		CertType:        ssh.UserCert,
		KeyId:           id.Username,
		ValidPrincipals: []string{"-teleport-nologin-" + id.Username},
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()),
		ValidBefore:     uint64(id.Expires.Unix()),
	}
	if err := cert.SignCert(rand.Reader, ca.SSH); err != nil {
		return nil, err
	}
	return ssh.MarshalAuthorizedKey(cert), nil
}

// CheckSSHPublicKey validates an authorized_keys line.
func CheckSSHPublicKey(authorizedKey []byte) error {
	if _, _, _, _, err := ssh.ParseAuthorizedKey(authorizedKey); err != nil {
		return fmt.Errorf("SSH public key is not in authorized_keys format: %w", err)
	}
	return nil
}

// SSHAuthorizedKey is the CA's SSH public key in authorized_keys form.
func (ca *CA) SSHAuthorizedKey() []byte { return ssh.MarshalAuthorizedKey(ca.SSH.PublicKey()) }

// ParseTLSPublicKey reads a PEM public key: PKIX "PUBLIC KEY", or PKCS#1 "RSA PUBLIC KEY".
// Only RSA of at least 2048 bits and ECDSA keys are accepted.
func ParseTLSPublicKey(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(bytes.TrimSpace(data))
	if block == nil {
		return nil, errors.New("TLS public key is not PEM")
	}
	var pub crypto.PublicKey
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported TLS public key PEM type %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing TLS public key: %w", err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits is too short", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
	default:
		return nil, fmt.Errorf("unsupported TLS public key type %T", pub)
	}
	return pub, nil
}

// ParseCertPEM reads the first certificate of a PEM bundle.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}
