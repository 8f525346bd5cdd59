from __future__ import annotations

import base64
import io
import json
import logging

import pytest

from agent.logs import configure_logging, logger, redact

PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"
    "-----END PRIVATE KEY-----\n"
)


@pytest.fixture(autouse=True)
def _reset():
    yield
    configure_logging("INFO", "text", io.StringIO())


def test_redact_removes_pem_and_base64_of_pem_in_any_alignment():
    for prefix in ("", "a", "ab"):
        wrapped = base64.b64encode((prefix + PEM).encode()).decode()
        result = redact(f"config={wrapped}")
        assert "[redacted]" in result
        # At most the few characters encoding the prefix before "-----BEGIN" survive.
        assert len(result) <= len("config=[redacted]") + 4
    assert redact({"k": [PEM, "plain"]}) == {"k": ["[redacted]\n", "plain"]}
    assert redact("nothing secret") == "nothing secret"


def test_json_events_have_fields_and_no_key_material():
    out = io.StringIO()
    configure_logging("DEBUG", "json", out)
    logger.bind(cluster="prod-1", secret="teleport.argocd-cluster.0011", result="created").info(
        "secret written"
    )
    logger.bind(body=PEM).warning("unexpected payload {}", PEM)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "secret written"
    assert first["level"] == "info"
    assert (first["cluster"], first["secret"], first["result"]) == (
        "prod-1",
        "teleport.argocd-cluster.0011",
        "created",
    )
    assert "PRIVATE KEY" not in out.getvalue()
    assert second["body"] == "[redacted]\n"
    assert second["message"] == "unexpected payload [redacted]\n"


def test_text_format_is_one_line_per_event_with_fields():
    out = io.StringIO()
    configure_logging("INFO", "text", out)
    logger.bind(cluster="c1").info("hello")
    logger.debug("hidden")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert "hello" in lines[0]
    assert "cluster=c1" in lines[0]


def test_redact_covers_the_wire_form_of_a_secrets_config():
    # data.config on the wire: base64 of JSON whose caData/certData/keyData are base64 of PEM.
    for prefix in ("", "x", "xy"):
        config = json.dumps(
            {
                "tlsClientConfig": {
                    "insecure": False,
                    "caData": prefix + base64.b64encode(PEM.encode()).decode(),
                }
            }
        )
        wire = base64.b64encode(config.encode()).decode()
        result = redact(f'{{"data": {{"config": "{wire}"}}}}')
        assert "[redacted]" in result
        # Nothing after the start of the key material survives.
        assert len(result) < len(wire) // 2


def test_stdlib_logging_goes_through_the_same_sink_and_redaction():
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    logging.getLogger("urllib3.connectionpool").warning("retrying after %s", PEM)
    [event] = (json.loads(line) for line in out.getvalue().splitlines())
    assert event["level"] == "warning"
    assert event["logger"] == "urllib3.connectionpool"
    assert event["message"] == "retrying after [redacted]\n"


def test_exceptions_are_rendered_into_a_redacted_stack_field():
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    try:
        raise ValueError(PEM)
    except ValueError:
        logger.exception("step failed")
    [event] = (json.loads(line) for line in out.getvalue().splitlines())
    assert "Traceback" in event["stack"]
    assert "ValueError" in event["stack"]
    assert "PRIVATE KEY" not in out.getvalue()


def test_debug_means_the_agents_own_lines_libraries_only_on_request():
    out = io.StringIO()
    configure_logging("DEBUG", "json", out)
    logger.debug("own debug line")
    for name in ("hpack.hpack", "grpclib.protocol", "urllib3.connectionpool", "asyncio"):
        logging.getLogger(name).debug("frame from %s", name)
    logging.getLogger("urllib3.connectionpool").warning("connection pool is full")
    messages = [json.loads(line)["message"] for line in out.getvalue().splitlines()]
    assert messages == ["own debug line", "connection pool is full"]

    out = io.StringIO()
    configure_logging("DEBUG", "json", out, libraries=True)
    logging.getLogger("hpack.hpack").debug("decoded header")
    event = json.loads(out.getvalue())
    assert (event["message"], event["level"], event["logger"]) == (
        "decoded header",
        "debug",
        "hpack.hpack",
    )


def test_a_level_above_info_applies_to_the_libraries_too():
    out = io.StringIO()
    configure_logging("WARNING", "json", out)
    logging.getLogger("urllib3.connectionpool").info("retrying")
    logging.getLogger("urllib3.connectionpool").warning("retried too often")
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == [
        "retried too often"
    ]
