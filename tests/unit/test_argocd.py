"""The rendered Argo CD cluster secret, pinned by golden files.

Regenerate the golden files with UPDATE_GOLDEN=1 after an intended format change.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.argocd import (
    CONFIG_CERT,
    CONFIG_HEAD,
    CONFIG_KEY,
    DesiredSecret,
    RenderError,
    cluster_hash,
    connection_target,
    deduplicate,
    encode_path_component,
    render_secret,
    secret_name,
)
from agent.config import parse_config
from agent.names import dns_subdomain_problems
from agent.teleport.model import Credential, KubeCluster, ProxySettings
from agent.teleport.webapi import parse_find_response

GOLDEN = Path(__file__).parent / "testdata" / "render"
NOW = dt.datetime(2026, 11, 22, 12, 0, 0, tzinfo=dt.UTC)
CA_1 = b"-----BEGIN CERTIFICATE-----\nCA-ONE\n-----END CERTIFICATE-----\n"
CA_2 = b"-----BEGIN CERTIFICATE-----\nCA-TWO\n-----END CERTIFICATE-----"
CERT = b"-----BEGIN CERTIFICATE-----\nBOT-CERT\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nBOT-KEY\n-----END PRIVATE KEY-----\n"
CREDENTIAL = Credential(CERT, KEY, (CA_1,), "argocd", NOW + dt.timedelta(hours=1))
PROXY = ProxySettings("root", "teleport.example.com:443", tls_routing=True)
CLUSTER = KubeCluster("kube-cluster-1", {"team": "payments", "env": "prod"})


def service(**overrides: Any):
    block = {
        "type": "kubernetes/argo-cd",
        "selectors": [{"name": "kube-cluster-1"}],
        "secret_namespace": "argocd",
        **overrides,
    }
    return parse_config(
        {
            "proxy_server": "teleport.example.com:443",
            "onboarding": {"token": "bot"},
            "services": [block],
        }
    ).services[0]


def render(svc=None, *, proxy=PROXY, cluster=CLUSTER, credential=CREDENTIAL) -> DesiredSecret:
    return render_secret(
        service=svc or service(),
        service_name="argo-cd",
        instance="argocd/release",
        proxy=proxy,
        cluster=cluster,
        credential=credential,
        agent_version="1.2.3",
        now=NOW,
    )


def readable(secret: DesiredSecret) -> dict[str, Any]:
    body = secret.apply_body()
    data = {k: base64.b64decode(v).decode() for k, v in body["data"].items()}
    raw = data.pop("config")
    config = json.loads(raw)
    tls = config["tlsClientConfig"]
    for key in ("caData", "certData", "keyData"):
        tls[key] = base64.b64decode(tls[key]).decode()
    # The exact bytes too: the chart's admission policy accepts only this canonical form.
    return {**body, "data": data, "config (bytes)": raw, "config (decoded)": config}


CASES = {
    "default": render,
    "custom-prefix": lambda: render(service(secret_name_prefix="team-a.clusters")),
    "templates-present-labels": lambda: render(
        service(
            cluster_name_template='{{ index .Labels "team" }}/{{.KubeName}}',
            secret_labels={"team": '{{ index .Labels "team" }}', "static": "yes"},
            secret_annotations={"owner": 'team {{ index .Labels "team" }} in {{.ClusterName}}'},
        )
    ),
    "templates-missing-labels": lambda: render(
        service(
            cluster_name_template='{{.KubeName}}{{ index .Labels "region" }}',
            secret_labels={"region": '{{ index .Labels "region" }}'},
            secret_annotations={"region": '{{ index .Labels "region" }}'},
        )
    ),
    "project": lambda: render(service(project="platform")),
    "namespaces-cluster-resources": lambda: render(
        service(project="platform", namespaces=["prod", "dev"], cluster_resources=True)
    ),
    "namespaces-only": lambda: render(service(namespaces=["prod"])),
    "no-tls-routing": lambda: render(
        proxy=ProxySettings(
            "root",
            "teleport.example.com:443",
            tls_routing=False,
            kube_public_addr="kube.teleport.example.com:3026",
        )
    ),
    "proxy-ip": lambda: render(proxy=ProxySettings("root", "10.1.2.3:3080", tls_routing=True)),
    "proxy-localhost": lambda: render(
        proxy=ProxySettings("root", "localhost:3080", tls_routing=True)
    ),
    "multiple-cas": lambda: render(
        credential=Credential(CERT, KEY, (CA_1, CA_2), "argocd", NOW + dt.timedelta(hours=1))
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_secret_matches_golden(case):
    actual = yaml.safe_dump(readable(CASES[case]()), sort_keys=True)
    path = GOLDEN / f"{case}.golden"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(actual)
    assert path.exists(), f"missing {path}; run with UPDATE_GOLDEN=1"
    assert actual == path.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_config_round_trips_as_json_with_base64_pem(case):
    secret = CASES[case]()
    config = json.loads(base64.b64decode(secret.apply_body()["data"]["config"]))
    tls = config["tlsClientConfig"]
    assert tls["insecure"] is False
    for key, marker in (
        ("caData", b"CERTIFICATE"),
        ("certData", b"CERTIFICATE"),
        ("keyData", b"PRIVATE KEY"),
    ):
        pem = base64.b64decode(tls[key], validate=True)
        assert pem.startswith(b"-----BEGIN ")
        assert marker in pem
    assert set(config) == {"tlsClientConfig"}
    assert not dns_subdomain_problems(secret.name)
    assert secret.apply_body()["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "cluster"


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_is_the_one_canonical_byte_form(case):
    # Fixed key order and spacing, no other key: what the admission policy matches. Every fixed
    # part and every value starts at a multiple of 3 bytes, so in base64 (all the policy can
    # see) each fixed part is fixed text.
    raw = base64.b64decode(CASES[case]().apply_body()["data"]["config"]).decode()
    tls = json.loads(raw)["tlsClientConfig"]
    order = ["insecure", "caData", "certData", "keyData"] + (
        ["serverName"] if "serverName" in tls else []
    )
    assert list(tls) == order
    assert raw.startswith(CONFIG_HEAD)
    offset = len(CONFIG_HEAD)
    for key, separator in (("caData", CONFIG_CERT), ("certData", CONFIG_KEY), ("keyData", None)):
        assert offset % 3 == 0
        value = tls[key]
        assert raw[offset : offset + len(value)] == value
        assert len(value) % 12 == 0, "a multiple of 3 characters and of 4 (no padding '=')"
        assert "=" not in value
        offset += len(value)
        if separator:
            assert raw[offset:].startswith(separator)
            offset += len(separator)
    assert raw[offset:] == (
        f'","serverName":"{tls["serverName"]}"}}}}' if "serverName" in tls else '"}}'
    )
    assert "\\" not in raw


def test_pem_padding_is_only_trailing_newlines():
    raw = base64.b64decode(render().apply_body()["data"]["config"])
    tls = json.loads(raw)["tlsClientConfig"]
    for key, pem in (("caData", CA_1), ("certData", CERT), ("keyData", KEY)):
        padded = base64.b64decode(tls[key])
        assert len(padded) % 9 == 0
        assert padded.rstrip(b"\n") == pem.rstrip(b"\n")


def test_server_name_that_is_not_a_dns_name_is_a_render_error():
    with pytest.raises(RenderError, match="not a DNS name"):
        render(proxy=ProxySettings("root", 'evil"host:443', tls_routing=True))


def test_name_matches_tbot_and_teleport_guide():
    # The same scheme tbot uses, so a tbot installation is replaced in place.
    # First 8 bytes of SHA-256 over the two names with nothing between them.
    expected = hashlib.sha256(b"rootkube-cluster-1").digest()[:8].hex()
    assert secret_name("teleport.argocd-cluster", "root", "kube-cluster-1") == (
        f"teleport.argocd-cluster.{expected}"
    )
    assert secret_name("teleport.argocd-cluster", "a", "bc") == secret_name(
        "teleport.argocd-cluster", "ab", "c"
    )
    assert len(cluster_hash("x", "y")) == 16


def test_path_components_use_unpadded_url_safe_base64():
    assert encode_path_component("root") == "cm9vdA"
    assert encode_path_component("kube-cluster-1") == "a3ViZS1jbHVzdGVyLTE"
    assert encode_path_component("??>") == "Pz8-"


@pytest.mark.parametrize(
    ("addr", "sni"),
    [
        ("teleport.example.com:443", "kube-teleport-proxy-alpn.teleport.example.com"),
        ("127.0.0.1:3080", "kube-teleport-proxy-alpn.teleport.cluster.local"),
        ("[::1]:3080", "kube-teleport-proxy-alpn.teleport.cluster.local"),
        ("localhost:3080", "kube-teleport-proxy-alpn.teleport.cluster.local"),
        (":3080", "kube-teleport-proxy-alpn.teleport.cluster.local"),
    ],
)
def test_server_name_rules_with_tls_routing(addr, sni):
    url, name = connection_target(ProxySettings("root", addr, tls_routing=True))
    assert url == f"https://{addr}"
    assert name == sni


def test_no_tls_routing_without_kube_listener_is_a_render_error():
    with pytest.raises(RenderError, match="TLS routing off"):
        render(proxy=ProxySettings("root", "teleport.example.com:443", tls_routing=False))


def test_label_template_rendering_an_invalid_value_is_reported_for_that_cluster():
    svc = service(secret_labels={"team": '{{ index .Labels "team" }}'})
    with pytest.raises(RenderError, match=r"secret_labels.team rendered 'no spaces allowed'"):
        render(svc, cluster=KubeCluster("c", {"team": "no spaces allowed"}))


def test_repr_never_shows_credentials():
    secret = render()
    assert "BOT-KEY" not in repr(secret)
    assert base64.b64encode(KEY).decode() not in repr(secret)
    assert "BOT-KEY" not in repr(CREDENTIAL)


def test_deduplicate_keeps_first_per_name_and_per_server():
    a = render(service(secret_name_prefix="a"))
    b_same_server = render(service(secret_name_prefix="b"))
    a_again = render(service(secret_name_prefix="a", project="x"))
    other = render(cluster=KubeCluster("kube-2"))
    kept, dropped = deduplicate([a, b_same_server, a_again, other])
    assert kept == [a, other]
    assert [d.secret for d in dropped] == [b_same_server, a_again]
    assert "already registered" in dropped[0].reason


def test_find_response_parsing():
    payload = {
        "cluster_name": "root",
        "server_version": "18.1.0",
        "proxy": {
            "tls_routing_enabled": False,
            "ssh": {"public_addr": "tp.example.com:443"},
            "kube": {"enabled": True, "listen_addr": "0.0.0.0:3026"},
        },
        "auth": {"signature_algorithm_suite": "balanced-v1"},
    }
    proxy = parse_find_response(payload, dialed_addr="ignored:1")
    assert proxy.kube_public_addr == "tp.example.com:3026"
    assert proxy.signature_algorithm_suite == "balanced-v1"
    assert not proxy.tls_routing
    bare = parse_find_response(
        {"cluster_name": "c", "proxy": {"tls_routing_enabled": True}}, dialed_addr="proxy:3080"
    )
    assert bare.web_public_addr == "proxy:3080"
