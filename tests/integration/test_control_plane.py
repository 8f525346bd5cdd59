"""The test control plane is real: RBAC, TokenRequest + JWKS and Pod Security all enforced."""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.request
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.harness.kube import (
    SERVICE_ACCOUNT_ISSUER,
    ControlPlane,
    control_plane,
    service_account_token,
    unique_namespace,
)

ROOT = Path(__file__).resolve().parents[2]


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _get_json(kube: ControlPlane, path: str, token: str) -> dict[str, object]:
    ctx = ssl.create_default_context(cafile=str(kube.ca_path))
    req = urllib.request.Request(  # noqa: S310 - loopback URL we built
        kube.url + path, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:  # noqa: S310
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_control_plane_starts_and_stops_without_leaving_processes(tmp_path):
    with control_plane(tmp_path) as plane:
        assert plane.apiserver is not None
        assert plane.etcd is not None
        version = k8s.VersionApi(plane.admin_client()).get_code()
        assert version.major == "1"
        pids = [plane.apiserver.popen.pid, plane.etcd.popen.pid]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_service_account_without_rbac_is_denied_secrets_while_admin_is_allowed(
    admin_api, namespace, service_account_client
):
    core = k8s.CoreV1Api(admin_api)
    core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="argocd-secret"), string_data={"k": "v"}),
    )
    assert (
        core.read_namespaced_secret("argocd-secret", namespace).data["k"]
        == base64.b64encode(b"v").decode()
    )

    nobody = k8s.CoreV1Api(service_account_client(namespace, "nobody"))
    with pytest.raises(ApiException) as denied:
        nobody.read_namespaced_secret("argocd-secret", namespace)
    assert denied.value.status == 403
    with pytest.raises(ApiException) as denied_list:
        nobody.list_namespaced_secret(namespace)
    assert denied_list.value.status == 403


def test_token_request_token_verifies_against_served_jwks(kube, admin_api, namespace):
    token = service_account_token(
        admin_api, namespace, "joiner", audiences=["teleport.example.com"]
    )
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(_b64url(header_b64))
    claims = json.loads(_b64url(payload_b64))
    assert claims["aud"] == ["teleport.example.com"]
    assert claims["iss"] == SERVICE_ACCOUNT_ISSUER
    assert claims["sub"] == f"system:serviceaccount:{namespace}:joiner"

    # The discovery document and JWKS are public to authenticated callers.
    admin_token = service_account_token(admin_api, namespace, "reader")
    discovery = _get_json(kube, "/.well-known/openid-configuration", admin_token)
    assert discovery["issuer"] == SERVICE_ACCOUNT_ISSUER
    jwks = _get_json(kube, "/openid/v1/jwks", admin_token)
    keys = {k["kid"]: k for k in jwks["keys"]}  # type: ignore[union-attr,index]
    jwk = keys[header["kid"]]
    public = rsa.RSAPublicNumbers(
        int.from_bytes(_b64url(jwk["e"]), "big"), int.from_bytes(_b64url(jwk["n"]), "big")
    ).public_key()
    # Raises InvalidSignature if the token was not signed by the served key.
    public.verify(
        _b64url(signature_b64),
        f"{header_b64}.{payload_b64}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    with pytest.raises(InvalidSignature):
        public.verify(
            _b64url(signature_b64),
            f"{header_b64}.{payload_b64}x".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )


def _pod(name: str, security_context: k8s.V1SecurityContext | None) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1PodSpec(
            automount_service_account_token=False,
            containers=[
                k8s.V1Container(
                    name="c", image="example.invalid/agent:1", security_context=security_context
                )
            ],
        ),
    )


RESTRICTED = k8s.V1SecurityContext(
    run_as_non_root=True,
    run_as_user=65532,
    allow_privilege_escalation=False,
    capabilities=k8s.V1Capabilities(drop=["ALL"]),
    seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
)


def test_restricted_pod_security_rejects_violating_pod_and_admits_compliant_one(admin_api):
    ns = unique_namespace(admin_api, labels={"pod-security.kubernetes.io/enforce": "restricted"})
    core = k8s.CoreV1Api(admin_api)
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(ns, _pod("root", k8s.V1SecurityContext(run_as_user=0)))
    assert rejected.value.status == 403
    assert "violates PodSecurity" in rejected.value.body
    assert (
        core.create_namespaced_pod(ns, _pod("restricted", RESTRICTED)).metadata.name == "restricted"
    )


def test_api_server_reports_the_pinned_version(kube):
    pinned = next(
        line.split("=", 1)[1].strip()
        for line in (ROOT / "tools" / "versions.env").read_text().splitlines()
        if line.startswith("KUBERNETES_VERSION=")
    )
    # Clients such as helm check kubeVersion constraints against this.
    assert k8s.VersionApi(kube.admin_client()).get_code().git_version == f"v{pinned}"
