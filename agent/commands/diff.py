"""What ``plan`` prints: per secret, create / update / unchanged, with a diff of labels,
annotations and non-secret data. Credentials are never shown: ``certData`` and ``keyData``
appear only as "renewed (redacted)".

Purely computational, no side-effects: the live secret is a parameter.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.argocd import DesiredSecret

__all__ = ["SecretChange", "diff_secret"]

_CREDENTIAL_KEYS = ("certData", "keyData")


@dataclass(frozen=True)
class SecretChange:
    namespace: str
    name: str
    cluster: str
    action: str  # "create", "update", "unchanged"
    lines: tuple[str, ...]


def _decode(data: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for key, value in data.items():
        try:
            out[key] = base64.b64decode(value).decode()
        except (ValueError, UnicodeDecodeError):
            out[key] = "<undecodable>"
    return out


def _tls(config: str) -> dict[str, Any]:
    try:
        data = json.loads(config)
        tls = data.get("tlsClientConfig") or {}
        return tls if isinstance(tls, dict) else {}
    except (ValueError, AttributeError):
        return {}


def _map_diff(kind: str, old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    lines = []
    for key in sorted(set(old) | set(new)):
        if key not in new:
            # Apply leaves keys it does not set alone; only keys the agent set are removed.
            continue
        if key not in old:
            lines.append(f"+ {kind} {key}={new[key]}")
        elif old[key] != new[key]:
            lines.append(f"~ {kind} {key}: {old[key]} -> {new[key]}")
    return lines


def _data_diff(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    lines = []
    for key in sorted(set(old) | set(new)):
        if key == "config":
            continue
        before, after = old.get(key), new.get(key)
        if before == after or after is None:
            continue
        lines.append(
            f"+ data {key}={after}" if before is None else f"~ data {key}: {before} -> {after}"
        )
    old_tls, new_tls = _tls(old.get("config", "")), _tls(new.get("config", ""))
    for key in sorted(set(old_tls) | set(new_tls)):
        before, after = old_tls.get(key), new_tls.get(key)
        if before == after:
            continue
        if key in _CREDENTIAL_KEYS:
            lines.append(f"~ config {key}: {'renewed' if before else 'set'} (redacted)")
        elif key == "caData":
            lines.append("~ config caData: changed (the Teleport Host CA)")
        else:
            lines.append(f"~ config {key}: {before!r} -> {after!r}")
    return lines


def diff_secret(desired: DesiredSecret, live: Mapping[str, Any] | None) -> SecretChange:
    """Compare what the agent would apply with the live secret (None: it does not exist)."""
    head = (desired.namespace, desired.name, desired.cluster)
    if live is None:
        lines = [f"+ label {k}={v}" for k, v in sorted(desired.labels.items())]
        lines += [f"+ annotation {k}={v}" for k, v in sorted(desired.annotations.items())]
        lines += [f"+ data {k}={v}" for k, v in sorted(desired.data.items()) if k != "config"]
        lines.append("+ config tlsClientConfig: caData, certData, keyData (redacted)")
        return SecretChange(*head, "create", tuple(lines))
    metadata = live.get("metadata") or {}
    lines = _map_diff("label", metadata.get("labels") or {}, desired.labels)
    lines += _map_diff("annotation", metadata.get("annotations") or {}, desired.annotations)
    lines += _data_diff(_decode(live.get("data") or {}), desired.data)
    return SecretChange(*head, "update" if lines else "unchanged", tuple(lines))
