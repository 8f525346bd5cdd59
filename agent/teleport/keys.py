"""Key pairs for Teleport credentials, chosen by the cluster's signature algorithm suite.

Suite ``legacy`` or unspecified: RSA 2048; ``balanced-v1``, ``fips-v1``, ``hsm-v1``: ECDSA
P-256. One key pair serves TLS and SSH. Purely computational apart from key generation, and
``pem_file``, which hands key material to the ssl module as a path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = [
    "PrivateKey",
    "algorithm_for_suite",
    "generate_key",
    "pem_file",
    "private_key_pem",
    "ssh_public_key",
    "tls_public_key_pem",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
Algorithm = Literal["rsa2048", "ecdsa-p256"]

_ECDSA_SUITES = frozenset({"balanced-v1", "fips-v1", "hsm-v1"})
_KNOWN_SUITES = _ECDSA_SUITES | {"", "legacy", "unspecified"}


def algorithm_for_suite(suite: str) -> Algorithm:
    """The key algorithm Teleport expects for a suite reported by ``/webapi/find``."""
    normalized = suite.strip().lower()
    if normalized not in _KNOWN_SUITES:
        raise ValueError(
            f"unknown signature algorithm suite {suite!r}: this agent knows legacy, "
            "balanced-v1, fips-v1 and hsm-v1; upgrade the agent"
        )
    return "ecdsa-p256" if normalized in _ECDSA_SUITES else "rsa2048"


def generate_key(suite: str) -> PrivateKey:
    if algorithm_for_suite(suite) == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def tls_public_key_pem(key: PrivateKey) -> bytes:
    """PEM PKIX (``BEGIN PUBLIC KEY``), as the join and certificate requests carry it."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def ssh_public_key(key: PrivateKey) -> bytes:
    """An authorized_keys line (``ssh-rsa AAAA...`` / ``ecdsa-sha2-nistp256 AAAA...``)."""
    return key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM: what goes into the Argo CD secret's keyData (Go's TLS stack reads it)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@contextmanager
def pem_file(data: bytes) -> Iterator[str]:
    """A path the ssl module can read key material from, never on a real disk if avoidable."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("teleport-identity", 0)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(prefix="teleport-identity-") as handle:  # pragma: no cover
        handle.write(data)
        handle.flush()
        yield handle.name
