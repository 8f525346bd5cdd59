"""The agent's daemon loop as a process of its own, for signal and fault tests.

Runs ``agent.runtime.serve`` exactly as the agent does, with JSON logs on stderr, the writer
authenticated by a ServiceAccount token and Teleport's part played by an inventory file
(tests/harness/source.py). Arguments: config file, API server URL, CA file, token file,
inventory file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kubernetes import client as k8s

from agent.config import load_config
from agent.kube import SecretWriter
from agent.logs import configure_logging
from agent.ports import Parts
from agent.runtime import Runtime, serve
from tests.harness.pki import CertificateAuthority
from tests.harness.source import InventorySource


def main(*args: str) -> int:
    config_file, url, ca_file, token_file, inventory = args
    configure_logging(fmt="json")
    config = load_config(config_file)
    cfg = k8s.Configuration()
    cfg.host, cfg.ssl_ca_cert = url, ca_file
    cfg.api_key = {"authorization": f"Bearer {Path(token_file).read_text()}"}
    writer = SecretWriter(k8s.ApiClient(cfg), request_timeout=5, retry_deadline=10)
    source = InventorySource(
        inventory_file=Path(inventory), ca=CertificateAuthority("teleport-host-ca")
    )
    runtime = Runtime(Parts(config, source, writer, "0.1.0"))
    return serve(runtime, diag_addr=config.diag_addr)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
