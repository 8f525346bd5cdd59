package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"reflect"
	"testing"
	"time"
)

// The identity is encoded in the subject exactly as TELEPORT.md §4 says, and reads back.
func TestIdentitySubjectRoundTrip(t *testing.T) {
	ca, err := NewCA("root", "user-ca", SuiteBalancedV1)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := NewKey(SuiteBalancedV1)
	now := time.Now().Truncate(time.Second)
	id := Identity{
		Username: "bot-argocd", Roles: []string{"access", "viewer"}, RouteToCluster: "root",
		KubernetesUsers: []string{"u1"}, KubernetesGroups: []string{"g1", "g2"}, KubernetesCluster: "kc",
		TeleportCluster: "root", Renewable: true, Generation: 7, DisallowReissue: true,
		BotName: "argocd", BotInstanceID: "inst-1", Expires: now.Add(time.Hour).UTC(),
	}
	certPEM, err := ca.IssueUser(id, key.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	got, err := IdentityFromCert(cert)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, id) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, id)
	}
	if !cert.NotBefore.Equal(now.Add(-time.Minute)) {
		t.Fatalf("NotBefore %v, want now - 1 min", cert.NotBefore)
	}
	if !reflect.DeepEqual(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Fatalf("ExtKeyUsage %v", cert.ExtKeyUsage)
	}
	want := map[string][]string{
		"2.5.4.3": {"bot-argocd"}, "2.5.4.10": {"access", "viewer"}, "2.5.4.9": {"root"},
		"1.3.9999.1.1": {"u1"}, "1.3.9999.1.2": {"g1", "g2"}, "1.3.9999.1.3": {"kc"}, "1.3.9999.1.7": {"root"},
		"1.3.9999.1.13": {"true"}, "1.3.9999.1.14": {"7"}, "1.3.9999.2.9": {"true"},
		"1.3.9999.2.18": {"argocd"}, "1.3.9999.2.20": {"inst-1"},
	}
	if got := attributes(cert.Subject); !reflect.DeepEqual(got, want) {
		t.Fatalf("subject attributes:\n got %v\nwant %v", got, want)
	}
}

func TestOptionalAttributesAreOmitted(t *testing.T) {
	subject := Identity{Username: "bot-a", Roles: []string{"bot-a"}, TeleportCluster: "root"}.Subject()
	der, _ := asn1.Marshal(subject.ToRDNSequence())
	var seq pkix.RDNSequence
	_, _ = asn1.Unmarshal(der, &seq)
	var name pkix.Name
	name.FillFromRDNSequence(&seq)
	got := attributes(name)
	for _, oid := range []string{"1.3.9999.1.3", "1.3.9999.1.13", "1.3.9999.1.14", "1.3.9999.2.9", "2.5.4.9"} {
		if _, ok := got[oid]; ok {
			t.Errorf("attribute %s present though unset", oid)
		}
	}
}

func attributes(n pkix.Name) map[string][]string {
	out := map[string][]string{}
	for _, a := range n.Names {
		out[a.Type.String()] = append(out[a.Type.String()], a.Value.(string))
	}
	return out
}

func TestParseTLSPublicKey(t *testing.T) {
	rsaKey, _ := NewKey(SuiteLegacy)
	ecKey, _ := NewKey(SuiteBalancedV1)
	pkix1, _ := x509.MarshalPKIXPublicKey(rsaKey.Public())
	pkix2, _ := x509.MarshalPKIXPublicKey(ecKey.Public())
	cases := []struct {
		name string
		pem  []byte
		ok   bool
	}{
		{"PKIX RSA", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix1}), true},
		{"PKIX ECDSA", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix2}), true},
		{"not PEM", []byte("ssh-rsa AAAA"), false},
		{"private key PEM type", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkix1}), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseTLSPublicKey(tc.pem); (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
