"""Issued credentials: a certificate, its private key and the CAs that verify the proxy."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509

__all__ = ["Credential"]


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

    def remaining(self, now: dt.datetime) -> dt.timedelta:
        return self.expires - now
