"""What Teleport hands out and what the agent reads from it, as plain values: the proxy's
settings, issued certificates, the bot's identity, the output credential, a Kubernetes cluster.

Imported by pure code and clients alike; nothing here does I/O. Identities Teleport issues: the
bot's own, and the output credential written to secrets.

What a Teleport certificate says is in its X.509 subject (TELEPORT.md §4); ``BotIdentity``
reads it so the client knows the bot's username, cluster, generation and instance without
asking Teleport. Private keys never appear in ``repr`` or logs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = [
    "BotIdentity",
    "Credential",
    "IssuedCerts",
    "KubeCluster",
    "ProxySettings",
    "split_address",
    "split_pem_certificates",
]

# Teleport's subject attributes (lib/tlsca): the OIDs the agent reads.
OID_TELEPORT_CLUSTER = x509.ObjectIdentifier("1.3.9999.1.7")
OID_RENEWABLE = x509.ObjectIdentifier("1.3.9999.1.13")
OID_GENERATION = x509.ObjectIdentifier("1.3.9999.1.14")
OID_BOT_NAME = x509.ObjectIdentifier("1.3.9999.2.18")
OID_BOT_INSTANCE = x509.ObjectIdentifier("1.3.9999.2.20")
_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Credential:
    """One output identity; it serves every Kubernetes cluster through path routing.

    The private key never appears in ``repr`` or logs.
    """

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    ca_certs_pem: tuple[bytes, ...]
    bot_name: str
    expires: dt.datetime

    @classmethod
    def from_pem(
        cls, cert_pem: bytes, key_pem: bytes, ca_certs_pem: tuple[bytes, ...], bot_name: str
    ) -> Credential:
        """Build a credential, taking its expiry from the certificate itself."""
        cert = x509.load_pem_x509_certificate(cert_pem)
        return cls(cert_pem, key_pem, ca_certs_pem, bot_name, cert.not_valid_after_utc)


def split_pem_certificates(pem: bytes) -> tuple[bytes, ...]:
    """Split concatenated PEM certificates (a CA during rotation) into one block each."""
    marker = b"-----END CERTIFICATE-----"
    blocks = []
    for part in pem.split(marker):
        start = part.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            blocks.append(part[start:] + marker + b"\n")
    return tuple(blocks)


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


@dataclass(frozen=True)
class BotIdentity:
    """The bot's certificate and key, and the Host CA that verifies the Auth Service.

    Everything else is read from the certificate subject (TELEPORT.md §4).
    """

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    host_ca_pem: tuple[bytes, ...]
    username: str = ""
    cluster_name: str = ""
    bot_name: str = ""
    instance_id: str = ""
    generation: int = 0
    renewable: bool = False
    not_before: dt.datetime = _NEVER
    expires: dt.datetime = _NEVER

    @classmethod
    def from_pem(
        cls, cert_pem: bytes, key_pem: bytes, host_ca_pem: tuple[bytes, ...]
    ) -> BotIdentity:
        cert = x509.load_pem_x509_certificate(cert_pem)
        subject = cert.subject
        generation = _attr(subject, OID_GENERATION)
        return cls(
            cert_pem=cert_pem,
            key_pem=key_pem,
            host_ca_pem=host_ca_pem,
            username=_attr(subject, NameOID.COMMON_NAME),
            cluster_name=_attr(subject, OID_TELEPORT_CLUSTER),
            bot_name=_attr(subject, OID_BOT_NAME),
            instance_id=_attr(subject, OID_BOT_INSTANCE),
            generation=int(generation) if generation.isdigit() else 0,
            renewable=_attr(subject, OID_RENEWABLE) == "true",
            not_before=cert.not_valid_before_utc,
            expires=cert.not_valid_after_utc,
        )

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.expires

    def describe(self) -> dict[str, str | int]:
        """Fields for log events: who the bot is, never key material."""
        return {
            "bot": self.bot_name,
            "bot_instance": self.instance_id,
            "generation": self.generation,
            "expires": self.expires.isoformat(),
        }


@dataclass(frozen=True)
class ProxySettings:
    """How clients reach the cluster through the proxy."""

    cluster_name: str
    # host:port of the proxy's public web address (also the Kubernetes address with TLS routing).
    web_public_addr: str
    tls_routing: bool
    # host:port of the separate Kubernetes listener when TLS routing is off ("" if none).
    kube_public_addr: str = ""
    server_version: str = ""
    signature_algorithm_suite: str = ""

    @property
    def kube_addr(self) -> str:
        """host:port through which Kubernetes clusters are reached ("" if none): the web
        address with TLS routing, else the separate Kubernetes listener."""
        return self.web_public_addr if self.tls_routing else self.kube_public_addr


@dataclass(frozen=True)
class IssuedCerts:
    """The certificates a join or renewal returns (PEM / SSH wire text, decoded)."""

    tls_cert_pem: bytes
    ssh_cert: bytes
    tls_ca_certs_pem: tuple[bytes, ...]
    ssh_ca_certs: tuple[bytes, ...]


@dataclass(frozen=True)
class KubeCluster:
    """A Kubernetes cluster registered in Teleport, with static and dynamic labels merged."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


def split_address(addr: str, default_port: int = 443) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) into its parts."""
    host, sep, port = addr.rpartition(":")
    if not sep or "]" in port:
        host, port = addr, str(default_port)
    return host.strip("[]"), int(port)
