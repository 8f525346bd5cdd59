"""Argo CD cluster secrets: the exact format Argo CD reads, rendered as a pure function.

One secret per (Teleport cluster, Kubernetes cluster). Argo CD reads only ``data``: ``name``,
``server``, ``config`` (JSON with ``tlsClientConfig``), and optionally ``project``,
``namespaces`` and ``clusterResources``. An unparsable ``config`` drops the cluster, and two
secrets with one ``server`` resolve nondeterministically, so this module never produces either.

Purely computational, no side-effects: the clock and the agent version are parameters.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent import labels as L
from agent.config import ArgoCDService
from agent.names import label_value_problems
from agent.teleport.model import Credential, KubeCluster, ProxySettings, split_pem_certificates
from agent.templating import TemplateContext
from agent.writes import Held

__all__ = [
    "CONFIG_CERT",
    "CONFIG_HEAD",
    "CONFIG_KEY",
    "CONFIG_SERVER_NAME",
    "CONFIG_TAIL",
    "DesiredSecret",
    "RenderError",
    "cluster_config",
    "cluster_hash",
    "connection_target",
    "deduplicate",
    "encode_path_component",
    "held_by",
    "owner_id",
    "render_secret",
    "secret_name",
    "shape_of",
]

KUBE_SNI_PREFIX = "kube-teleport-proxy-alpn."
KUBE_SNI_FALLBACK = KUBE_SNI_PREFIX + "teleport.cluster.local"
# A TLS server name the canonical config may carry: a DNS name, nothing JSON would escape.
_SERVER_NAME = re.compile(r"[A-Za-z0-9.-]{1,253}")


class RenderError(ValueError):
    """A secret cannot be rendered for one cluster (for example a label renders invalid)."""


def cluster_hash(teleport_cluster: str, kube_cluster: str) -> str:
    """First 8 bytes of SHA-256 over both names, as hex: the same suffix tbot uses."""
    digest = hashlib.sha256(teleport_cluster.encode() + kube_cluster.encode()).digest()
    return digest[:8].hex()


def secret_name(prefix: str, teleport_cluster: str, kube_cluster: str) -> str:
    return f"{prefix}.{cluster_hash(teleport_cluster, kube_cluster)}"


def owner_id(instance: str, service: str) -> str:
    """Label value naming which agent service owns a secret (a label value must be short)."""
    return hashlib.sha256(f"{instance}\0{service}".encode()).hexdigest()[:16]


def encode_path_component(value: str) -> str:
    """URL-safe base64 without padding, as the proxy's Kubernetes path routing expects."""
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def connection_target(proxy: ProxySettings) -> tuple[str, str]:
    """(base URL, TLS server name) through which Kubernetes clusters are reached.

    With TLS routing the proxy's web address serves Kubernetes when the client asks for the
    ``kube-teleport-proxy-alpn.`` server name; a host that is empty, ``localhost`` or an IP has
    no such DNS name, so the cluster-local fallback name is used. Without TLS routing the
    separate Kubernetes listener is used and no server name is needed.
    """
    if proxy.tls_routing:
        addr = proxy.web_public_addr
        host = addr.rpartition(":")[0] if ":" in addr else addr
        if not host or host == "localhost" or _is_ip(host):
            sni = KUBE_SNI_FALLBACK
        else:
            sni = KUBE_SNI_PREFIX + host
        return f"https://{proxy.kube_addr}", sni
    if not proxy.kube_addr:
        raise RenderError(
            "the Teleport proxy has TLS routing off and no Kubernetes listener address; "
            "enable kube_listen_addr or TLS routing on the proxy"
        )
    return f"https://{proxy.kube_addr}", ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class DesiredSecret:
    """A fully rendered cluster secret; ``repr`` never shows the credentials."""

    namespace: str
    name: str
    cluster: str  # Kubernetes cluster name, for logs and results
    cluster_hash: str
    server: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    data: Mapping[str, str] = field(repr=False)

    @property
    def owner(self) -> str:
        return self.labels[L.LABEL_OWNER]

    @property
    def field_manager(self) -> str:
        """The server-side apply manager: one per owning service, see agent.labels."""
        return f"{L.FIELD_MANAGER}/{self.owner}"

    def apply_body(self) -> dict[str, Any]:
        """The server-side apply body: only the fields the agent owns."""
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": dict(self.labels),
                "annotations": dict(self.annotations),
            },
            "type": "Opaque",
            "data": {k: _b64(v.encode()) for k, v in self.data.items()},
        }


def _render_map(
    templates: Mapping[str, Any], ctx: TemplateContext, *, check_values: bool
) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, template in templates.items():
        value = template.render(ctx)
        if not value:
            continue  # an empty value is omitted, as documented
        if check_values and (problems := label_value_problems(value)):
            raise RenderError(
                f"secret_labels.{key} rendered {value!r} for cluster {ctx.kube_name}, which is "
                f"not a valid label value ({'; '.join(problems)}); fix the template or the "
                "cluster's label"
            )
        out[key] = value
    return out


def render_secret(
    *,
    service: ArgoCDService,
    service_name: str,
    instance: str,
    proxy: ProxySettings,
    cluster: KubeCluster,
    credential: Credential,
    agent_version: str,
    now: dt.datetime,
) -> DesiredSecret:
    """Render the secret for one Kubernetes cluster, or raise RenderError."""
    teleport_cluster = proxy.cluster_name
    base_url, server_name = connection_target(proxy)
    server = (
        f"{base_url}/v1/teleport/{encode_path_component(teleport_cluster)}/"
        f"{encode_path_component(cluster.name)}"
    )
    ctx = TemplateContext(teleport_cluster, cluster.name, cluster.labels)
    display_name = service.cluster_name_template.render(ctx)
    if not display_name:
        raise RenderError(
            f"cluster_name_template rendered an empty name for cluster {cluster.name}; "
            "include {{.KubeName}} or a label every cluster has"
        )
    if not credential.ca_certs_pem:
        raise RenderError("the credential carries no CA certificates to verify the proxy")
    data = {
        "name": display_name,
        "server": server,
        "config": cluster_config(
            ca_pem=b"".join(_with_newline(c) for c in credential.ca_certs_pem),
            cert_pem=credential.cert_pem,
            key_pem=credential.key_pem,
            server_name=server_name,
        ),
    }
    if service.project:
        data["project"] = service.project
    if service.namespaces:
        data["namespaces"] = ",".join(service.namespaces)
        data["clusterResources"] = "true" if service.cluster_resources else "false"

    digest = cluster_hash(teleport_cluster, cluster.name)
    owner = owner_id(instance, service_name)
    labels = _render_map(service.secret_labels, ctx, check_values=True)
    labels.update(
        {
            L.ARGOCD_SECRET_TYPE: "cluster",
            L.LABEL_MANAGED_BY: L.MANAGED_BY,
            L.LABEL_OWNER: owner,
            L.LABEL_CLUSTER: digest,
        }
    )
    annotations = _render_map(service.secret_annotations, ctx, check_values=False)
    annotations.update(
        {
            L.ANNOTATION_BOT_NAME: credential.bot_name,
            L.ANNOTATION_KUBE_CLUSTER: cluster.name,
            L.ANNOTATION_TELEPORT_CLUSTER: teleport_cluster,
            L.ANNOTATION_UPDATED: _rfc3339(now),
            L.ANNOTATION_VERSION: agent_version,
            L.ANNOTATION_CREDENTIAL_EXPIRES: _rfc3339(credential.expires),
            L.ANNOTATION_OWNER: f"{instance}/{service_name}",
        }
    )
    return DesiredSecret(
        namespace=service.resolved_namespace(),
        name=f"{service.secret_name_prefix}.{digest}",
        cluster=cluster.name,
        cluster_hash=digest,
        server=server,
        labels=labels,
        annotations=annotations,
        data=data,
    )


# The config's fixed parts. The chart's admission policy sees a Secret's data only as base64
# text (CEL cannot decode it) and matches that text with anchored regular expressions, which is
# possible when every fixed part and every value starts at a multiple of 3 bytes: base64 turns
# each 3 bytes into 4 characters, so the fixed parts then encode to fixed text. Hence the spaces
# after some colons (valid JSON whitespace) and the PEM padded with newlines to a multiple of 9
# bytes, whose base64 (a multiple of 12 characters, no "=") keeps the next part aligned too.
CONFIG_HEAD = '{"tlsClientConfig":{"insecure":false,"caData": "'
CONFIG_CERT = '","certData": "'
CONFIG_KEY = '","keyData":  "'
CONFIG_SERVER_NAME = '","serverName":"'
CONFIG_TAIL = '"}}'
_PEM_BLOCK = 9


def cluster_config(*, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, server_name: str) -> str:
    """The secret's ``config``: JSON in one canonical byte form, built here byte by byte.

    ``{"tlsClientConfig":{"insecure":false,"caData": "<b64>","certData": "<b64>",
    "keyData":  "<b64>","serverName":"<name>"}}`` - this key order, exactly these spaces, no
    other key, ``serverName`` only when there is one; each PEM ends in newlines up to a multiple
    of 9 bytes before it is base64-encoded (PEM parsers skip them). The chart's admission policy
    accepts exactly this form (see above), so any other spelling of the same JSON is refused;
    standard base64 and a DNS name never need escaping.
    """
    if server_name and not _SERVER_NAME.fullmatch(server_name):
        raise RenderError(
            f"the TLS server name {server_name!r} derived from the proxy's public address is "
            "not a DNS name; check the proxy's public_addr in Teleport"
        )
    tail = f"{CONFIG_SERVER_NAME}{server_name}{CONFIG_TAIL}" if server_name else CONFIG_TAIL
    return (
        f"{CONFIG_HEAD}{_b64(_pad_pem(ca_pem))}{CONFIG_CERT}{_b64(_pad_pem(cert_pem))}"
        f"{CONFIG_KEY}{_b64(_pad_pem(key_pem))}{tail}"
    )


def _pad_pem(pem: bytes) -> bytes:
    return pem + b"\n" * (-len(pem) % _PEM_BLOCK)


def _with_newline(pem: bytes) -> bytes:
    return pem if pem.endswith(b"\n") else pem + b"\n"


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Duplicate:
    """A desired secret that was dropped because an earlier one claims its name or server."""

    secret: DesiredSecret
    reason: str


def deduplicate(
    secrets: Iterable[DesiredSecret],
) -> tuple[list[DesiredSecret], list[Duplicate]]:
    """Keep the first secret per name and per server URL within a namespace.

    Argo CD resolves two secrets with one server nondeterministically, and two services
    writing one name would overwrite each other on every cycle; the first service wins.
    """
    kept: list[DesiredSecret] = []
    dropped: list[Duplicate] = []
    names: dict[tuple[str, str], DesiredSecret] = {}
    servers: dict[tuple[str, str], DesiredSecret] = {}
    for secret in secrets:
        by_name = names.get((secret.namespace, secret.name))
        by_server = servers.get((secret.namespace, secret.server))
        if by_name is not None:
            dropped.append(Duplicate(secret, f"secret name already written for {by_name.cluster}"))
        elif by_server is not None:
            dropped.append(
                Duplicate(secret, f"server {secret.server} already registered by {by_server.name}")
            )
        else:
            names[(secret.namespace, secret.name)] = secret
            servers[(secret.namespace, secret.server)] = secret
            kept.append(secret)
    return kept, dropped


# What changes with every credential (and every write), and never by itself warrants a write;
# nor does the agent's version: after an upgrade it reaches each secret with its next rotation.
_CREDENTIAL_TLS_KEYS = frozenset({"certData", "keyData", "caData"})
_WRITE_ANNOTATIONS = frozenset(
    {L.ANNOTATION_UPDATED, L.ANNOTATION_CREDENTIAL_EXPIRES, L.ANNOTATION_VERSION}
)


def shape_of(secret: DesiredSecret) -> int | None:
    """A secret's content but for its credential and write time: two secrets of one shape
    differ only in what a rotation changes."""
    return _shape(secret.labels, secret.annotations, secret.data)


def held_by(secret: DesiredSecret, live: Mapping[str, Any]) -> Held:
    """What the live object of ``secret`` (as the API server answered it) holds: its
    credential's expiry and its shape, counting only the labels and annotations the agent
    sets (others' survive every apply and are none of its business)."""
    metadata = live.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    try:
        data = {k: base64.b64decode(v).decode() for k, v in (live.get("data") or {}).items()}
    except (ValueError, TypeError):
        return Held(None, None)
    try:
        expires: dt.datetime | None = dt.datetime.fromisoformat(
            str(annotations.get(L.ANNOTATION_CREDENTIAL_EXPIRES, ""))
        )
    except ValueError:
        expires = None
    if expires is not None and expires.tzinfo is None:
        expires = None  # not what the agent writes
    shape = _shape(
        {k: str(labels.get(k, "")) for k in secret.labels},
        {k: str(annotations.get(k, "")) for k in secret.annotations},
        data,
    )
    credential = _credential_in(data, str(annotations.get(L.ANNOTATION_BOT_NAME, "")))
    if credential is not None:
        expires = credential.expires  # the certificate's own word over the annotation
    return Held(expires, shape, credential)


def _credential_in(data: Mapping[str, str], bot_name: str) -> Credential | None:
    """The credential in a secret's ``config``, if it reads as a certificate, key and CA."""
    try:
        tls = json.loads(data["config"])["tlsClientConfig"]
        cert, key, ca = (base64.b64decode(tls[k]) for k in ("certData", "keyData", "caData"))
        cas = split_pem_certificates(ca)
        return Credential.from_pem(cert, key, cas, bot_name) if cas else None
    except (ValueError, KeyError, TypeError):
        return None


def _shape(
    labels: Mapping[str, str], annotations: Mapping[str, str], data: Mapping[str, str]
) -> int | None:
    try:
        config = json.loads(data.get("config", ""))
        tls = dict(config["tlsClientConfig"])
    except (ValueError, KeyError, TypeError):
        return None  # no config Argo CD can parse: nothing worth keeping
    kept_tls = {k: v for k, v in tls.items() if k not in _CREDENTIAL_TLS_KEYS}
    kept_config = {**config, "tlsClientConfig": kept_tls}
    return hash(
        (
            tuple(sorted(labels.items())),
            tuple(sorted((k, v) for k, v in annotations.items() if k not in _WRITE_ANNOTATIONS)),
            tuple(sorted((k, v) for k, v in data.items() if k != "config")),
            json.dumps(kept_config, sort_keys=True),
        )
    )
