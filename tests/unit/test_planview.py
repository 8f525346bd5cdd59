"""``plan`` output: what changes, never the credentials."""

from __future__ import annotations

import base64
import json

from agent.argocd import DesiredSecret
from agent.commands.diff import diff_secret


def desired(cert: str = "NEWCERT", server: str = "https://p/v1/x") -> DesiredSecret:
    config = {"tlsClientConfig": {"caData": "CA", "certData": cert, "keyData": "KEY" + cert}}
    return DesiredSecret(
        namespace="argocd",
        name="teleport.argocd-cluster.0011",
        cluster="prod",
        cluster_hash="0011",
        server=server,
        labels={"argocd.argoproj.io/secret-type": "cluster", "team": "a"},
        annotations={"teleport.dev/updated": "now"},
        data={"name": "root-prod", "server": server, "config": json.dumps(config)},
    )


def live(secret: DesiredSecret, **labels: str) -> dict[str, object]:
    return {
        "metadata": {"labels": {**secret.labels, **labels}, "annotations": {}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in secret.data.items()},
    }


def test_a_missing_secret_is_created_with_credentials_redacted():
    change = diff_secret(desired(), None)
    assert change.action == "create"
    text = "\n".join(change.lines)
    assert "+ label team=a" in text
    assert "+ data server=https://p/v1/x" in text
    assert "NEWCERT" not in text
    assert "KEY" not in text.replace("keyData", "")


def test_renewed_credentials_show_as_redacted_and_other_changes_as_diffs():
    old = live(desired(cert="OLDCERT", server="https://old/v1/x"), foreign="kept")
    change = diff_secret(desired(), old)
    assert change.action == "update"
    assert "~ config certData: renewed (redacted)" in change.lines
    assert "~ data server: https://old/v1/x -> https://p/v1/x" in change.lines
    assert "+ annotation teleport.dev/updated=now" in change.lines
    assert not any("foreign" in line for line in change.lines)  # others' labels stay
    assert not any("OLDCERT" in line or "NEWCERT" in line for line in change.lines)


def test_an_identical_secret_is_unchanged():
    secret = desired()
    current = live(secret)
    current["metadata"]["annotations"] = dict(secret.annotations)  # type: ignore[index]
    assert diff_secret(secret, current).action == "unchanged"
