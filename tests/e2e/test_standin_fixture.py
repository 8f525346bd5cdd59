"""The stand-in fixture itself: it starts on loopback random ports, its admin helpers act on
the running process, and it leaves nothing behind."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.harness.standin import (
    AdminError,
    StandIn,
    bot_doc,
    output_identity,
    role_doc,
    standin,
    standin_factory,  # noqa: F401 - the fixture
    token_doc,
    web_join,
)

RESOURCES = [
    role_doc("access", kubernetes_labels={"*": "*"}, kubernetes_groups=["g"]),
    bot_doc("argocd", ["access"]),
    token_doc("t1", "argocd"),
    token_doc("t2", "argocd"),
]


def get_json(server: StandIn, path: str) -> tuple[int, Any]:
    ctx = ssl.create_default_context(cafile=str(server.web_ca_path))
    try:
        with urllib.request.urlopen(
            f"https://{server.proxy_addr}{path}", timeout=5, context=ctx
        ) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_stand_in_stops_without_leftovers() -> None:
    with standin(RESOURCES) as server:
        pid = server.ready["pid"]
        workdir = server.workdir
        assert server.proxy_addr.startswith("127.0.0.1:")
        assert server.host_ca_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        assert get_json(server, "/webapi/find")[1]["cluster_name"] == "root"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not workdir.exists()


def test_admin_helpers_act_on_the_running_stand_in(
    standin_factory: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    server: StandIn = standin_factory(RESOURCES, suite="balanced-v1")
    assert get_json(server, "/webapi/ping")[1]["auth"]["signature_algorithm_suite"] == "balanced-v1"

    server.fail_next("/webapi/find", "ConnectionProblem", count=1, message="down for a moment")
    assert get_json(server, "/webapi/find") == (504, {"error": {"message": "down for a moment"}})
    assert get_json(server, "/webapi/find")[0] == 200

    bot = web_join(server, "t1")
    [instance] = server.instances()
    assert (instance["generation"], instance["locked"]) == (1, False)
    server.lock(instance["id"], "by the test")
    assert server.instances()[0]["locked"] is True
    server.unlock(instance["id"])

    before = server.host_ca_path.read_bytes()
    server.rotate_host_ca("start")
    assert server.host_ca_path.read_bytes().count(b"BEGIN CERTIFICATE") == 2
    # Output identities are still issued over the auth route during the rotation.
    out = output_identity(server, bot, ["access"], workdir=tmp_path)
    assert "STREET=root" in out.certificate.subject.rfc4514_string().split(",")
    server.rotate_host_ca("complete")
    after = server.host_ca_path.read_bytes()
    assert after.count(b"BEGIN CERTIFICATE") == 1
    assert after != before

    server.delete("token", "t2")
    with pytest.raises(urllib.error.HTTPError) as refused:
        web_join(server, "t2")
    assert refused.value.code == 403

    server.stop_listening()
    with pytest.raises(urllib.error.URLError):
        get_json(server, "/webapi/find")
    server.start_listening()
    assert get_json(server, "/webapi/find")[0] == 200

    log = server.request_log()
    assert {"route", "method", "identity", "result"} <= set(log[-1])
    assert any(e["method"] == "POST /webapi/host/credentials" for e in log)
    with pytest.raises(AdminError) as bad:
        server.fail_next("/webapi/find", "NoSuchKind")
    assert bad.value.status == 400
