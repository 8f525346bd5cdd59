from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.teleport.keys import (
    algorithm_for_suite,
    generate_key,
    private_key_pem,
    ssh_public_key,
    tls_public_key_pem,
)
from agent.teleport.webapi import parse_certs, parse_find_response, register_request


@pytest.mark.parametrize(
    ("suite", "algorithm"),
    [
        ("", "rsa2048"),
        ("legacy", "rsa2048"),
        ("unspecified", "rsa2048"),
        ("balanced-v1", "ecdsa-p256"),
        ("fips-v1", "ecdsa-p256"),
        ("hsm-v1", "ecdsa-p256"),
        ("Balanced-V1", "ecdsa-p256"),
    ],
)
def test_suite_selects_the_key_algorithm(suite, algorithm):
    assert algorithm_for_suite(suite) == algorithm


def test_unknown_suite_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown signature algorithm suite 'balanced-v9'"):
        algorithm_for_suite("balanced-v9")


@pytest.mark.parametrize(
    ("suite", "kind", "ssh_prefix"),
    [
        ("legacy", rsa.RSAPrivateKey, b"ssh-rsa "),
        ("balanced-v1", ec.EllipticCurvePrivateKey, b"ecdsa-sha2-nistp256 "),
    ],
)
def test_one_key_pair_encodes_for_tls_and_ssh(suite, kind, ssh_prefix):
    key = generate_key(suite)
    assert isinstance(key, kind)
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.key_size == 2048
    tls = tls_public_key_pem(key)
    assert tls.startswith(b"-----BEGIN PUBLIC KEY-----")
    ssh = ssh_public_key(key)
    assert ssh.startswith(ssh_prefix)
    # Both encodings carry the same public key.
    same = serialization.load_ssh_public_key(ssh).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert same == tls
    assert private_key_pem(key).startswith(b"-----BEGIN PRIVATE KEY-----")


def test_register_request_encodes_bytes_as_standard_base64():
    body = register_request(
        token="argocd-bot",
        public_tls_key_pem=b"TLS-PEM",
        public_ssh_key=b"ssh-rsa AAAA",
        expires=dt.datetime(2026, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        id_token="jwt",
    )
    assert body == {
        "token": "argocd-bot",
        "role": "Bot",
        "public_tls_key": base64.b64encode(b"TLS-PEM").decode(),
        "public_ssh_key": base64.b64encode(b"ssh-rsa AAAA").decode(),
        "expires": "2026-01-01T00:00:00Z",
        "id_token": "jwt",
    }
    without = register_request(
        token="t",
        public_tls_key_pem=b"a",
        public_ssh_key=b"b",
        expires=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    assert "id_token" not in without


def test_parse_certs_decodes_every_field_and_rejects_a_missing_certificate():
    b64 = lambda v: base64.b64encode(v).decode()  # noqa: E731
    certs = parse_certs(
        {
            "tls": b64(b"TLS"),
            "ssh": b64(b"SSH"),
            "tls_ca_certs": [b64(b"CA1"), b64(b"CA2")],
            "ssh_ca_certs": [b64(b"S")],
        }
    )
    assert certs.tls_cert_pem == b"TLS"
    assert certs.tls_ca_certs_pem == (b"CA1", b"CA2")
    assert certs.ssh_ca_certs == (b"S",)
    with pytest.raises(ValueError, match="no tls certificate"):
        parse_certs({"ssh": b64(b"SSH")})


@pytest.mark.parametrize("cluster_name", [None, "", 42], ids=["null", "empty", "not-a-string"])
def test_find_answer_without_a_cluster_name_is_an_error(cluster_name):
    with pytest.raises(ValueError, match="no cluster_name"):
        parse_find_response(
            {"cluster_name": cluster_name, "proxy": {"tls_routing_enabled": True}},
            dialed_addr="teleport.example.com:443",
        )
