"""Logging: one event per line with fields, readable on a terminal, JSON in the container.

Every record passes a redaction step before any sink sees it, so a certificate or key that
slips into a message or a field is replaced, in PEM, in base64-of-PEM form and in the form a
secret's ``data.config`` has on the wire (base64 of JSON holding base64 of PEM) alike. The
standard library's ``logging`` (urllib3, the Kubernetes client) is bridged into the same sinks,
and a traceback is rendered into the event's ``stack`` field through the same redaction.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from typing import TYPE_CHECKING, Any, Literal, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Message, Record

__all__ = ["configure_logging", "logger", "redact"]

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.DOTALL)
# base64 of "-----BEGIN" in its three alignments: PEM wrapped once more in base64; then base64
# of that base64 ("LS0tLS1CRUdJTi"), which is how a PEM inside a secret's data.config JSON looks
# in the secret's wire form.
_B64_PEM = re.compile(
    r"(LS0tLS1CRUdJTi|0tLS0tQkVHSU4|tLS0tLUJFR0lO"
    r"|TFMwdExTMUNSVWRK|xTMHRMUzFDUlVkSlRp|MUzB0TFMxQ1JVZEpU)"
    r"[A-Za-z0-9+/=]*"
)
REDACTED = "[redacted]"


def redact(value: Any) -> Any:
    """Replace key material in strings (recursively in containers)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return _B64_PEM.sub(REDACTED, _PEM.sub(REDACTED, value))
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


def _patch(record: Record) -> None:
    record["message"] = redact(record["message"])
    record["extra"].update(redact(dict(record["extra"])))
    exception = record["exception"]
    if exception is not None:
        # The traceback becomes a redacted field; no sink ever renders the raw one.
        record["extra"]["error"] = redact(str(exception.value))
        record["extra"]["stack"] = redact(
            "".join(
                traceback.format_exception(exception.type, exception.value, exception.traceback)
            )
        )
        record["exception"] = None


class _StdlibBridge(logging.Handler):
    """Hands records of the standard library's ``logging`` to loguru, keeping their level."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info or None).bind(logger=record.name).log(
            level, "{}", record.getMessage()
        )


def _json_sink(stream: TextIO) -> Any:
    def sink(message: Message) -> None:
        record = message.record
        event: dict[str, Any] = {
            "time": record["time"].isoformat(),
            "level": record["level"].name.lower(),
            "message": record["message"],
        }
        event.update({k: v for k, v in record["extra"].items() if k not in event})
        stream.write(json.dumps(event, default=str) + "\n")
        stream.flush()

    return sink


def _text_format(record: Record) -> str:
    fields = " ".join(f"{k}={{extra[{k}]}}" for k in record["extra"])
    return (
        "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}"
        + (f" <dim>{fields}</dim>" if fields else "")
        + "\n"
    )


def configure_logging(
    level: str = "INFO",
    fmt: Literal["text", "json"] = "text",
    stream: TextIO | None = None,
    *,
    libraries: bool = False,
) -> None:
    """Send all events to ``stream`` (default stderr) in the chosen format.

    ``debug`` means the agent's own debug events. The libraries' (the standard library's
    ``logging``: hpack, grpclib, urllib3, asyncio, the Kubernetes client) stay at ``info`` unless
    ``libraries`` is set: at debug they log every HTTP/2 frame and connection, and would drown
    the agent's lines (about nine in ten lines of a debug log were theirs).
    """
    stream = stream or sys.stderr
    logger.remove()
    logger.configure(patcher=_patch)
    library_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    if not libraries:
        library_level = max(library_level, logging.INFO)
    logging.basicConfig(handlers=[_StdlibBridge()], level=library_level, force=True)
    if fmt == "json":
        logger.add(_json_sink(stream), level=level.upper(), format="{message}", backtrace=False)
    else:
        logger.add(
            stream,
            level=level.upper(),
            format=_text_format,
            colorize=stream.isatty(),
            backtrace=False,
            diagnose=False,  # variable values in tracebacks could hold keys
        )
