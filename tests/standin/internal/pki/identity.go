package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"strconv"
	"time"
)

// The subject attribute OIDs of a Teleport certificate (TELEPORT.md §4).
var (
	OIDKubeUsers       = asn1.ObjectIdentifier{1, 3, 9999, 1, 1}
	OIDKubeGroups      = asn1.ObjectIdentifier{1, 3, 9999, 1, 2}
	OIDKubeCluster     = asn1.ObjectIdentifier{1, 3, 9999, 1, 3}
	OIDTeleportCluster = asn1.ObjectIdentifier{1, 3, 9999, 1, 7}
	OIDRenewable       = asn1.ObjectIdentifier{1, 3, 9999, 1, 13}
	OIDGeneration      = asn1.ObjectIdentifier{1, 3, 9999, 1, 14}
	OIDDisallowReissue = asn1.ObjectIdentifier{1, 3, 9999, 2, 9}
	OIDBotName         = asn1.ObjectIdentifier{1, 3, 9999, 2, 18}
	OIDBotInstanceID   = asn1.ObjectIdentifier{1, 3, 9999, 2, 20}
	oidOrganization    = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidStreetAddress   = asn1.ObjectIdentifier{2, 5, 4, 9}
	oidCommonName      = asn1.ObjectIdentifier{2, 5, 4, 3}
)

// Identity is what a Teleport user certificate says about its holder (TELEPORT.md §4).
type Identity struct {
	Username          string
	Roles             []string
	RouteToCluster    string
	KubernetesUsers   []string
	KubernetesGroups  []string
	KubernetesCluster string
	TeleportCluster   string
	Renewable         bool
	Generation        uint64
	DisallowReissue   bool
	BotName           string
	BotInstanceID     string
	Expires           time.Time
}

// Subject encodes the identity as an X.509 subject, one attribute per value.
func (id Identity) Subject() pkix.Name {
	var extra []pkix.AttributeTypeAndValue
	add := func(oid asn1.ObjectIdentifier, v string) {
		extra = append(extra, pkix.AttributeTypeAndValue{Type: oid, Value: v})
	}
	for _, u := range id.KubernetesUsers {
		add(OIDKubeUsers, u)
	}
	for _, g := range id.KubernetesGroups {
		add(OIDKubeGroups, g)
	}
	if id.KubernetesCluster != "" {
		add(OIDKubeCluster, id.KubernetesCluster)
	}
	if id.TeleportCluster != "" {
		add(OIDTeleportCluster, id.TeleportCluster)
	}
	if id.Renewable {
		add(OIDRenewable, "true")
	}
	if id.Generation > 0 {
		add(OIDGeneration, strconv.FormatUint(id.Generation, 10))
	}
	if id.DisallowReissue {
		add(OIDDisallowReissue, "true")
	}
	if id.BotName != "" {
		add(OIDBotName, id.BotName)
	}
	if id.BotInstanceID != "" {
		add(OIDBotInstanceID, id.BotInstanceID)
	}
	name := pkix.Name{CommonName: id.Username, Organization: append([]string(nil), id.Roles...), ExtraNames: extra}
	if id.RouteToCluster != "" {
		name.StreetAddress = []string{id.RouteToCluster}
	}
	return name
}

// IdentityFromCert decodes the identity from a certificate's subject.
func IdentityFromCert(cert *x509.Certificate) (Identity, error) {
	id := Identity{Expires: cert.NotAfter}
	for _, attr := range cert.Subject.Names {
		value, ok := attr.Value.(string)
		if !ok {
			continue
		}
		switch {
		case attr.Type.Equal(oidCommonName):
			id.Username = value
		case attr.Type.Equal(oidOrganization):
			id.Roles = append(id.Roles, value)
		case attr.Type.Equal(oidStreetAddress):
			id.RouteToCluster = value
		case attr.Type.Equal(OIDKubeUsers):
			id.KubernetesUsers = append(id.KubernetesUsers, value)
		case attr.Type.Equal(OIDKubeGroups):
			id.KubernetesGroups = append(id.KubernetesGroups, value)
		case attr.Type.Equal(OIDKubeCluster):
			id.KubernetesCluster = value
		case attr.Type.Equal(OIDTeleportCluster):
			id.TeleportCluster = value
		case attr.Type.Equal(OIDRenewable):
			id.Renewable = value == "true"
		case attr.Type.Equal(OIDGeneration):
			gen, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return Identity{}, fmt.Errorf("certificate generation %q is not a number", value)
			}
			id.Generation = gen
		case attr.Type.Equal(OIDDisallowReissue):
			id.DisallowReissue = value == "true"
		case attr.Type.Equal(OIDBotName):
			id.BotName = value
		case attr.Type.Equal(OIDBotInstanceID):
			id.BotInstanceID = value
		}
	}
	return id, nil
}
